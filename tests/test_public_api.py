"""Every public name of `adaptive_jax` is importable by its dotted path, in a
fresh interpreter (`from adaptive_jax.checkpoint import Checkpointer`), and is
one object under both names."""

import importlib
import subprocess
import sys

import pytest

import adaptive_jax


def _modules() -> list[str]:
    return [n for n in adaptive_jax.__all__ if n in adaptive_jax._SUBMODULES]


def test_every_public_module_imports_by_its_dotted_path_in_a_fresh_process():
    names = _modules()
    code = "\n".join(
        [
            "import importlib, sys",
            f"for name in {names!r}:",
            "    module = importlib.import_module('adaptive_jax.' + name)",
            "    public = getattr(module, '__all__', ())",
            "    for attribute in public:",
            "        exec(f'from adaptive_jax.{name} import {attribute}')",
            "from adaptive_jax.checkpoint import Checkpointer",
            "from adaptive_jax.export import export, size_report",
            "from adaptive_jax.serving import build, lookup",
            "from adaptive_jax.feature_column import embedding_column",
            "from adaptive_jax.hashing import to_hash_bucket_fast",
            "from adaptive_jax.sparse import from_dense",
            "import adaptive_jax.sharding, adaptive_jax.nnx, adaptive_jax.nn",
            "print('ok')",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("name", adaptive_jax.__all__)
def test_a_public_name_is_one_object_under_both_paths(name):
    value = getattr(adaptive_jax, name)
    if name in adaptive_jax._SUBMODULES:
        assert importlib.import_module(f"adaptive_jax.{name}") is value
        where = adaptive_jax._SUBMODULES[name]
        assert importlib.import_module(f"adaptive_jax.{where}") is value
        assert value.__name__ == f"adaptive_jax.{where}"  # not a copy
    else:
        module = importlib.import_module(f"adaptive_jax.{adaptive_jax._NAMES[name]}")
        assert getattr(module, name) is value


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("adaptive_jax.no_such_module")
