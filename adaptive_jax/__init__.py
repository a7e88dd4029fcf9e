"""adaptive_jax: DeepRec's Adaptive Embedding in JAX.

The public modules (`feature_column`, `optim`, `hashing`, `sparse`, ...) and
names load on first use, so that a serving process can import
`adaptive_jax.serving` without the training stack (optax, orbax). They live in
sub-packages by layer (`ids`, `table`, `optim`, `column`, `feature_column`,
`parallel`, `serving`, `persist`, `pipeline`; docs/architecture.md); import
them from here, as `from adaptive_jax import feature_column as fc`, or by their
dotted paths, as `from adaptive_jax.checkpoint import Checkpointer`: an import
hook gives the module where it lives, one module object under both names.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
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
    "nnx": "nnx",
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


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `adaptive_jax.<public module>` where it lives (`_SUBMODULES`), so
    that `import adaptive_jax.checkpoint` gives `adaptive_jax.persist.checkpoint`
    itself, not a copy: one module, two names."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or _SUBMODULES.get(name, name) == name:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder, replaced in `exec_module`

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system takes what `sys.modules` holds under the name once
        # this returns: the real module.
        sys.modules[module.__name__] = _module(module.__name__.rpartition(".")[2])


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
