"""adaptive_jax: DeepRec's Adaptive Embedding in JAX.

Submodules and public names load on first use, so that a serving process can
import `adaptive_jax.serving` without the training stack (optax, orbax).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "adaptive",
    "checkpoint",
    "combiners",
    "data",
    "ev",
    "eviction",
    "export",
    "feature_column",
    "hashing",
    "ids",
    "initializers",
    "metrics",
    "nn",
    "optim",
    "options",
    "partitioned",
    "serving",
    "sharding",
    "sparse",
    "statistics",
    "table",
)
_NAMES = {
    "CBFFilter": "options",
    "CounterFilter": "options",
    "DynamicTable": "table",
    "EmbeddingVariableOption": "options",
    "GlobalStepEvict": "options",
    "Ids": "ids",
    "InitializerOption": "options",
    "L2WeightEvict": "options",
    "PressureEvict": "options",
    "SparseIds": "sparse",
}

__all__ = tuple(sorted(_NAMES)) + _SUBMODULES


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"adaptive_jax.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"adaptive_jax.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'adaptive_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
