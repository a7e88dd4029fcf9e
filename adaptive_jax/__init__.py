"""adaptive_jax: DeepRec's Adaptive Embedding in JAX.

The public modules (`feature_column`, `optim`, `hashing`, `sparse`, ...) and
names load on first use, so that a serving process can import
`adaptive_jax.serving` without the training stack (optax, orbax). They live in
sub-packages by layer (`ids`, `table`, `optim`, `column`, `feature_column`,
`parallel`, `serving`, `persist`, `pipeline`; docs/architecture.md); import
them from here, as `from adaptive_jax import feature_column as fc`.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {  # public module -> where it lives (the layers: docs/architecture.md)
    "adaptive": "column.adaptive",
    "checkpoint": "persist.checkpoint",
    "combiners": "column.combiners",
    "data": "data",
    "ev": "column.ev",
    "eviction": "column.eviction",
    "export": "persist.export",
    "feature_column": "feature_column",
    "hashing": "ids.hashing",
    "ids": "ids",
    "initializers": "column.initializers",
    "metrics": "metrics",
    "nn": "nn",
    "optim": "optim",
    "options": "column.options",
    "partitioned": "column.partitioned",
    "pipeline": "pipeline",
    "serving": "serving",
    "sharding": "parallel.sharding",
    "sparse": "ids.sparse",
    "stacking": "column.stacking",
    "statistics": "column.statistics",
    "table": "table",
}
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

__all__ = tuple(sorted(_NAMES)) + tuple(_SUBMODULES)


def _module(name: str) -> Any:
    return importlib.import_module(f"adaptive_jax.{_SUBMODULES[name]}")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return _module(name)
    if name in _NAMES:
        return getattr(_module(_NAMES[name]), name)
    raise AttributeError(f"module 'adaptive_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
