"""A column's ids on the host: any feature form to `ColumnIds` (keys, buckets, mask).

Shared by training (`feature_column.prepare`) and serving (`serving`), so that
both land an id in the same dynamic-table key and the same static bucket: the
raw int64 id or, for a string, DeepRec's `Fingerprint64(s) % (2**63 - 1)`; and
TensorFlow's `Fingerprint64(str(id)) % hash_bucket_size`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _checks, _fingerprint
from adaptive_jax.ids import sparse as sparse_lib

_STRING_KEY_MODULUS = np.uint64(2**63 - 1)  # DeepRec's key of a string


def as_sparse(feature: Any, key: str, size: int | None) -> sparse_lib.SparseIds:
    """A feature as `SparseIds`: as it is, or from a dense, ragged or COO form
    (an object with `indices`, `values` and `dense_shape`, a `tf.SparseTensor`)."""
    if isinstance(feature, sparse_lib.SparseIds):
        return feature
    _checks.not_traced(feature, key, f"feature '{key}'")
    try:
        return _as_sparse(feature, size)
    except (TypeError, ValueError, OverflowError) as error:
        raise type(error)(f"column '{key}': {error}") from error


def _as_sparse(feature: Any, size: int | None) -> sparse_lib.SparseIds:
    if all(hasattr(feature, name) for name in ("indices", "values", "dense_shape")):
        shape = tuple(int(d) for d in np.asarray(feature.dense_shape))
        return sparse_lib.from_coo(feature.indices, feature.values, shape, size=size)
    ragged = isinstance(feature, list | tuple)
    if ragged and any(isinstance(row, list | tuple) for row in feature):
        return sparse_lib.from_ragged(feature, size=size)
    return sparse_lib.from_dense(np.asarray(feature), size=size)


def keys_and_buckets(
    batch: sparse_lib.SparseIds,
    *,
    key: str,
    dtype: str,
    hash_bucket_size: int | np.ndarray | None,
    int_buckets: str = "host",
) -> tuple[np.ndarray, np.ndarray | None]:
    """DeepRec's dynamic-table keys and TensorFlow's static buckets, on the host.

    Args:
      batch: the column's ids.
      key: the column's key, for errors.
      dtype: "string", "int64" or "int32", the column's.
      hash_bucket_size: the static table's buckets; or `[batch.size]` of
        them, one per entry (a stacked column's members); or None (buckets
        all 0).
      int_buckets: "host" computes the buckets of int ids here; "device"
        leaves them to the step (`step_buckets`), which finds the same.

    Returns:
      `(keys int64, buckets int32 or None)`, each `[batch.size]`; 0 for
      padding; buckets None for int ids with `int_buckets="device"`.

    Raises:
      ValueError: string ids for an int column, or the other way round.
    """
    valid = np.asarray(batch.valid)
    if batch.strings != (dtype == "string") and valid.any():  # empty: either
        kind = "strings" if batch.strings else "integers"
        raise ValueError(f"column '{key}' has dtype {dtype}, but its ids are {kind}")
    count = int(np.count_nonzero(valid))
    real = slice(0, count) if valid[:count].all() else valid  # built: a prefix
    values = ids_lib.to_numpy(batch.values)
    if dtype == "int32":
        _checks.int32_range(values, valid, key)
    keys = values
    if batch.strings:
        keys = np.zeros(values.shape, np.int64)
        keys[real] = values[real].view(np.uint64) % _STRING_KEY_MODULUS
    if not batch.strings and int_buckets == "device":
        return keys, None
    buckets = np.zeros(values.shape, np.int32)
    if hash_bucket_size is not None:
        if batch.strings:
            prints = values[real].view(np.uint64)
        else:
            prints = _fingerprint.fingerprint64(values[real])
        sizes = np.asarray(hash_bucket_size, np.uint64)
        buckets[real] = prints % (sizes[real] if sizes.ndim else sizes)
    return keys, buckets


@struct.dataclass
class ColumnIds:
    """The ids of one column in one batch, ready for a jitted lookup: numpy
    arrays as prepared on the host (see `sparse.SparseIds`).

    Attributes:
      ids: `SparseIds` whose values are the dynamic-table keys.
      buckets: `[size] int32`, each id's static bucket (0 without static
        table); or None for int ids whose buckets the step computes from
        their keys (`prepare(..., int_buckets="device")`).
      to_dynamic: `[size] bool`, the routing mask (1: dynamic table); None to
        let the admission filter (or, serving, the presence of a row) route.
      hash_bucket_size: static, the buckets `buckets` were computed for (None:
        not recorded), so that a lookup refuses ids prepared for another
        column.
    """

    ids: sparse_lib.SparseIds
    buckets: jax.Array | None
    to_dynamic: jax.Array | None
    hash_bucket_size: int | None = struct.field(pytree_node=False, default=None)


def routing_mask(batch: sparse_lib.SparseIds, key: str, mask: Any) -> np.ndarray:
    """A per-id 0/1 routing mask, checked (one value per sparse id, ints or
    bools) and padded to the batch's size."""
    _checks.not_traced(mask, key, f"adaptive_mask_tensors['{key}']")
    num_ids = int(np.sum(np.asarray(batch.valid)))
    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.shape[0] != num_ids:
        raise ValueError(
            f"column '{key}': adaptive_mask_tensors['{key}'] has shape {mask.shape}, "
            f"expected ({num_ids},): one value per sparse id"
        )
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise ValueError(
            f"column '{key}': adaptive_mask_tensors['{key}'] must be ints or bools, "
            f"got dtype {mask.dtype}"
        )
    _checks.mask_values(mask, key)
    padded = np.zeros(batch.size, bool)
    padded[:num_ids] = mask != 0
    return padded


def column_ids(
    batch: sparse_lib.SparseIds,
    *,
    key: str,
    dtype: str,
    hash_bucket_size: int | None,
    mask: Any = None,
    int_buckets: str = "host",
) -> ColumnIds:
    """A column's `ColumnIds`: keys, buckets and the routing mask (None: none)."""
    keys, buckets = keys_and_buckets(
        batch,
        key=key,
        dtype=dtype,
        hash_bucket_size=hash_bucket_size,
        int_buckets=int_buckets,
    )
    if mask is not None:
        mask = routing_mask(batch, key, mask)
    if batch.strings:  # an int id is its own key: its values stay
        batch = batch.replace(values=ids_lib.split(keys))
    return ColumnIds(
        ids=batch,
        buckets=buckets,
        to_dynamic=mask,
        hash_bucket_size=hash_bucket_size,
    )


def feature_ids(
    features: Any,
    *,
    key: str,
    dtype: str,
    hash_bucket_size: int | None,
    mask: Any = None,
    size: int | None = None,
    int_buckets: str = "host",
) -> tuple[ColumnIds, int]:
    """`(ColumnIds, batch size)` of the feature `key` of `features` (any form
    `as_sparse` takes), for a column of one feature.

    Raises:
      ValueError: the feature is missing, or its ids or mask are bad; naming
        the column.
    """
    check_present(features, key)
    batch = as_sparse(features[key], key, size)
    ids = column_ids(
        batch,
        key=key,
        dtype=dtype,
        hash_bucket_size=hash_bucket_size,
        mask=mask,
        int_buckets=int_buckets,
    )
    return ids, batch.batch_size


def check_present(features: Any, key: str) -> None:
    """Raises a ValueError naming column `key` if its feature is missing."""
    if key not in features:
        raise ValueError(
            f"column '{key}': feature '{key}' is missing from the features (they "
            f"have {sorted(features)})"
        )


def check_masks(masks: Any, adaptive_keys: set[str], what: str) -> None:
    """Raises a ValueError naming a mask (`what[key]`) of no adaptive column,
    or one traced inside jit."""
    for key in masks:
        _checks.not_traced(masks[key], key, f"{what}['{key}']")
        if key not in adaptive_keys:
            raise ValueError(f"{what}['{key}']: no adaptive column has key '{key}'")


def one_batch_size(batch_sizes: set[int]) -> None:
    """Raises a ValueError if the columns' features have different batch sizes."""
    if len(batch_sizes) > 1:
        raise ValueError(f"features have different batch sizes: {sorted(batch_sizes)}")
