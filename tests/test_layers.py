"""The package's layers: each sub-package imports only the layers above it
(docs/architecture.md), and the serving layer never the training stack."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "adaptive_jax"
ALLOWED = {  # layer -> the layers (and helpers) its modules may import
    "ids": set(),
    "table": {"ids", "_numerics"},
    "optim": {"table._dedup", "_numerics"},
    "column": {"ids", "table", "optim", "_numerics"},
    "feature_column": {"ids", "table", "optim", "column", "_numerics"},
    "parallel": {"ids", "table", "optim", "column", "feature_column", "_numerics"},
    "serving": {"ids", "table", "column.combiners", "column.stacking"},
    "pipeline": {"ids", "table", "optim", "column", "feature_column", "_numerics"},
}
# The faces (modules at the top of the package) may import every layer; the
# layers none of them.
FACES = {"nn", "nnx", "_faces", "metrics"}


def _imports(path: pathlib.Path) -> set[str]:
    """The adaptive_jax modules a file imports, as dotted paths below the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "adaptive_jax"
        ):
            base = node.module.removeprefix("adaptive_jax").lstrip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("adaptive_jax.")
                for a in node.names
                if a.name.startswith("adaptive_jax.")
            }
    return found


def _allowed(layer: str, imported: str) -> bool:
    if imported.split(".")[0] == layer:
        return True
    return any(
        imported == rule or imported.startswith(rule + ".") for rule in ALLOWED[layer]
    )


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_above_it(layer):
    bad = [
        f"{path.relative_to(PACKAGE)} imports {imported}"
        for path in sorted((PACKAGE / layer).glob("*.py"))
        for imported in sorted(_imports(path))
        if not _allowed(layer, imported)
    ]
    assert not bad, "\n".join(bad)


def test_no_layer_imports_a_face():
    bad = [
        f"{path.relative_to(PACKAGE)} imports {imported}"
        for layer in ALLOWED
        for path in sorted((PACKAGE / layer).glob("*.py"))
        for imported in sorted(_imports(path))
        if imported.split(".")[0] in FACES
    ]
    assert not bad, "\n".join(bad)


def test_the_serving_layer_loads_without_the_training_stack():
    code = (
        "import sys, adaptive_jax.serving as s, adaptive_jax.sparse, "
        "adaptive_jax.hashing; "
        "bad = [m for m in ('optax', 'orbax') if m in sys.modules]; "
        "print(bad); assert not bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
