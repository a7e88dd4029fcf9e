"""Exports and deltas on disk: `.npy` files and a manifest, read with numpy only.

A directory holds `manifest.json` (the kind, each column's settings, and each
array's file, shape, dtype and checksum) and one `.npy` file per array.
bfloat16 arrays are stored as their uint16 bits. `save` writes the directory
whole or not at all (a temporary directory, renamed when complete); `load`
checks every array against the manifest before returning anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

import ml_dtypes
import numpy as np

from adaptive_jax.serving._digest import checksum
from adaptive_jax.serving._format import ColumnDelta, ColumnExport, Delta, Export

FORMAT = 1
_KINDS = {"export": (Export, ColumnExport), "delta": (Delta, ColumnDelta)}


class ExportError(ValueError):
    """An export or delta on disk is missing, unreadable or corrupted; the
    message says which column and array."""


def _kind(saved: Export | Delta) -> str:
    for kind, (outer, _) in _KINDS.items():
        if isinstance(saved, outer):
            return kind
    raise TypeError(f"save takes an Export or a Delta, got {type(saved).__name__}")


def save(saved: Export | Delta, directory: str | pathlib.Path) -> None:
    """Writes an export or a delta to `directory`, which must not exist yet.

    Raises:
      FileExistsError: `directory` exists.
    """
    directory = pathlib.Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists; exports are written anew")
    partial = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    manifest = {"format": FORMAT, "kind": _kind(saved), "columns": {}}
    for index, (name, column) in enumerate(saved.columns.items()):
        settings, arrays = {}, {}
        for field in dataclasses.fields(column):
            value = getattr(column, field.name)
            if field.name not in column.arrays:
                settings[field.name] = value
                continue
            if value is None:
                arrays[field.name] = None
                continue
            file = f"{index}.{field.name}.npy"
            stored = (
                value.view(np.uint16) if value.dtype == ml_dtypes.bfloat16 else value
            )
            np.save(partial / file, stored, allow_pickle=False)
            arrays[field.name] = {
                "file": file,
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "checksum": checksum(stored),
            }
        manifest["columns"][name] = {"settings": settings, "arrays": arrays}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    partial.rename(directory)


def _read_array(directory: pathlib.Path, entry: dict, where: str) -> np.ndarray:
    try:
        stored = np.load(directory / entry["file"], allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ExportError(f"{where} cannot be read: {error}") from error
    if list(stored.shape) != entry["shape"] or checksum(stored) != entry["checksum"]:
        raise ExportError(f"{where} is corrupted: it does not match the manifest")
    if entry["dtype"] == "bfloat16":
        return stored.view(ml_dtypes.bfloat16)
    if str(stored.dtype) != entry["dtype"]:
        raise ExportError(f"{where} has dtype {stored.dtype}, not {entry['dtype']}")
    return stored


def load(directory: str | pathlib.Path) -> Export | Delta:
    """Reads an export or a delta written by `save`, with numpy only.

    Raises:
      ExportError: no manifest, an unknown format, or an array that is missing,
        truncated or corrupted (the message names its column and array).
    """
    directory = pathlib.Path(directory)
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ExportError(f"no readable export in {directory}: {error}") from error
    if manifest.get("format") != FORMAT or manifest.get("kind") not in _KINDS:
        raise ExportError(
            f"{path}: format {manifest.get('format')} of kind "
            f"{manifest.get('kind')!r}; this version reads format {FORMAT}"
        )
    outer, inner = _KINDS[manifest["kind"]]
    columns = {}
    for name, entry in manifest["columns"].items():
        arrays = {
            field: None
            if spec is None
            else _read_array(directory, spec, f"column '{name}': array '{field}'")
            for field, spec in entry["arrays"].items()
        }
        columns[name] = inner(**entry["settings"], **arrays)
    return outer(columns)
