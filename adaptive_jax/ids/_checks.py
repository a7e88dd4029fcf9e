"""Checks of a column's ids and masks on the host, before anything is hashed.

Each raises a ValueError that names the column, the value that is wrong and
the fix, so that no id is silently read as another: a mask value other than 0
or 1 (which would route like 1), an id of an int32 column outside int32 (which
TensorFlow refuses, and a cast would wrap), a raw feature inside jit.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

INT32 = np.iinfo(np.int32)


def mask_values(mask: np.ndarray, key: str) -> None:
    """Raises unless each value of the routing mask is 0 or 1 (or a bool)."""
    if mask.dtype == np.bool_:
        return
    bad = np.flatnonzero((mask != 0) & (mask != 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"column '{key}': adaptive_mask_tensors['{key}'][{i}] is {mask[i]}: "
            "give 1 (the dynamic table) or 0 (the static bucket) per id"
        )


def int32_range(values: np.ndarray, valid: np.ndarray, key: str) -> None:
    """Raises if an id of an int32 column is outside the int32 range."""
    outside = valid & ((values < INT32.min) | (values > INT32.max))
    if outside.any():
        value = int(values[np.flatnonzero(outside)[0]])
        raise ValueError(
            f"column '{key}' has dtype int32, but its id {value} is outside the "
            "int32 range: declare the column with dtype='int64'"
        )


def not_traced(feature: Any, key: str, what: str) -> None:
    """Raises if a raw feature or mask is a value traced by jit: they are
    hashed and padded on the host, before the step."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(feature)):
        raise ValueError(
            f"column '{key}': {what} is traced inside jit, but raw features are "
            "prepared on the host: call fc.prepare(features, columns, "
            "adaptive_mask_tensors=...) outside the jitted step and pass its "
            "output in"
        )
