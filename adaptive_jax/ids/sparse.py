"""Sparse id inputs: a `tf.SparseTensor`-like pytree of a padded, static size.

A batch of examples, each with any number of ids (the items a user clicked, the
words of a query), in the form of `tf.SparseTensor`: `indices` (example, position),
`values`, `dense_shape`, and optional per-id `weights`. So that jit does not
compile again for every batch, the ids are padded up to `size` entries, a power of
two unless the caller fixes it, and `valid` marks the real ones: a stream of
batches compiles a handful of times at most.

The conversions run on the host, with numpy: from a dense padded array (-1 or ""
marks a missing id, as in `tf.feature_column`), from ragged Python lists, and from
a COO triple (indices, values, dense shape). String ids are fingerprinted there
(TensorFlow's Fingerprint64, kept whole, so that both DeepRec's key of a string
and its TensorFlow bucket derive from it); int ids cross into JAX exactly, as
`ids.Ids`, with x64 off or on. The batch they build holds numpy arrays: a
jitted function takes it as it is, moving it to the device with its other
arguments, and `jax.device_put` moves it ahead of time (no JAX call per array
while preparing, so that preparing stays cheap and can run in other threads or
processes).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _fingerprint

MIN_SIZE = 8


@struct.dataclass
class SparseIds:
    """A batch of variable-length id lists, padded to a static number of entries.

    Its arrays are numpy arrays as built on the host, JAX arrays once moved to
    a device (or traced in a jitted function).

    Attributes:
      indices: `[size, 2] int32`, (example, position) of each id, in row-major
        order; padding entries hold (batch_size, 0), outside the batch, so that a
        segment sum over `indices[:, 0]` drops them.
      values: `ids.Ids` of shape `[size]`; 0 for padding.
      valid: `[size] bool`, False for padding.
      dense_shape: `[2] int32`, (batch_size, width), as in `tf.SparseTensor`;
        an array, so that the longest row of a batch does not cause a compile.
      batch_size: static, the number of examples.
      strings: static; True if the ids were strings, whose `values` are then the
        64 bits of their Fingerprint64 (TensorFlow's): both DeepRec's key of a
        string and its bucket derive from it (`string_keys`).
      weights: `[size] float32` per-id weights (0 for padding), or None.
    """

    indices: jax.Array
    values: ids_lib.Ids
    valid: jax.Array
    dense_shape: jax.Array
    batch_size: int = struct.field(pytree_node=False)
    strings: bool = struct.field(pytree_node=False, default=False)
    weights: jax.Array | None = None

    @property
    def size(self) -> int:
        """The padded number of entries."""
        return self.indices.shape[0]

    @property
    def row_ids(self) -> jax.Array:
        """`[size] int32`: the example of each entry, `batch_size` for padding."""
        return self.indices[:, 0]

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """The real entries, on the host: (indices, int64 values, dense_shape,
        weights or None)."""
        valid = np.asarray(self.valid)
        weights = None if self.weights is None else np.asarray(self.weights)[valid]
        values = ids_lib.to_numpy(self.values)[valid]
        return (
            np.asarray(self.indices)[valid],
            values,
            np.asarray(self.dense_shape),
            weights,
        )


def padded_size(num_ids: int, size: int | None = None) -> int:
    """The padded number of entries for `num_ids` ids.

    Args:
      num_ids: how many ids the batch has.
      size: a fixed size, or None for the next power of two (at least MIN_SIZE).

    Raises:
      ValueError: `size` is below `num_ids` (nothing is truncated) or below 1.
    """
    if size is None:
        return max(MIN_SIZE, 1 << max(num_ids - 1, 0).bit_length())
    if size < max(num_ids, 1):
        raise ValueError(
            f"the batch has {num_ids} ids, more than size={size}: pass a larger "
            "size, or None to pad to a power of two (ids are never truncated)"
        )
    return size


def _as_int64(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Int ids as int64, exactly; strings or bytes as the bits of their
    Fingerprint64. Returns the values and whether they were strings.

    Raises:
      TypeError: floats, bools or other objects (the message names the dtype), or
        strings mixed with ints.
      OverflowError: a Python int outside the int64 range.
    """
    kind = values.dtype.kind
    if kind == "O":
        strings = [isinstance(v, str | bytes) for v in values]
        if all(strings) and strings:
            kind = "U"
        elif any(strings):
            raise TypeError("ids mix strings and integers: give one kind per batch")
    if kind in "US":
        return _fingerprint.fingerprint64(values).view(np.int64), True
    if values.size == 0:
        return np.zeros(0, np.int64), kind in "US"
    if kind == "O":
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(
                    "ids must be integers, strings or bytes, got "
                    f"{type(value).__name__}"
                )
            if not -(2**63) <= value < 2**63:
                raise OverflowError(
                    f"id {value} is outside int64: ids are int64 values (DeepRec's "
                    "keys); give larger ids as strings, or hash them into int64"
                )
        return np.asarray(values.tolist(), dtype=np.int64), False
    if kind not in "iu":
        raise TypeError(
            f"ids must be integers, strings or bytes, got dtype {values.dtype}"
        )
    return values.astype(np.int64), False  # uint64 above INT64_MAX keeps its bits


def _build(
    rows: np.ndarray,
    positions: np.ndarray,
    values: np.ndarray,
    dense_shape: tuple[int, int],
    weights: np.ndarray | None,
    size: int | None,
    *,
    hashed: bool = False,
) -> SparseIds:
    """Pads host arrays of the real entries into a `SparseIds`; `hashed`:
    the values are strings' fingerprints already (uint64)."""
    num_ids = len(values)
    if weights is not None and len(weights) != num_ids:
        raise ValueError(f"{len(weights)} weights for {num_ids} ids: give one per id")
    size = padded_size(num_ids, size)
    batch_size = dense_shape[0]
    indices = np.zeros((size, 2), np.int32)
    indices[:, 0] = batch_size
    indices[:num_ids, 0], indices[:num_ids, 1] = rows, positions
    padded = np.zeros(size, np.int64)
    if hashed:
        padded[:num_ids], strings = values.view(np.int64), True
    else:
        padded[:num_ids], strings = _as_int64(values)
    padded_weights = None
    if weights is not None:
        padded_weights = np.zeros(size, np.float32)
        padded_weights[:num_ids] = weights
    return SparseIds(
        indices=indices,
        values=ids_lib.split(padded),
        valid=np.arange(size) < num_ids,
        dense_shape=np.asarray(dense_shape, np.int32),
        batch_size=batch_size,
        strings=strings,
        weights=padded_weights,
    )


def _float_weights(weights: object, what: str) -> np.ndarray:
    array = np.asarray(weights)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"{what} must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        bad = array.reshape(-1)[~np.isfinite(array.reshape(-1))][0]
        raise ValueError(f"{what} must be finite numbers, got {bad}")
    return array


def from_dense(
    values: np.ndarray | Sequence,
    *,
    missing: int | str | bytes | None = -1,
    weights: np.ndarray | None = None,
    size: int | None = None,
) -> SparseIds:
    """From a dense padded `[batch]` or `[batch, width]` array of ids.

    Args:
      values: ints, strings or bytes; one row per example.
      missing: the value that marks a missing id: -1 for ints, "" (or b"") for
        strings, as in `tf.feature_column`; None if none is missing.
      weights: optional per-id weights of the shape of `values`.
      size: the padded number of entries; None for the next power of two.

    Example:
      >>> batch = from_dense([[5, -1], [7, 8]])
      >>> batch.size, batch.to_numpy()[1].tolist()
      (8, [5, 7, 8])
    """
    array = np.asarray(values)
    if array.ndim not in (1, 2):
        raise ValueError(f"values must be [batch] or [batch, width], got {array.shape}")
    array = array.reshape(array.shape[0], array.shape[1] if array.ndim == 2 else 1)
    if missing == -1 and array.dtype.kind in "USO":
        missing = b"" if array.dtype.kind == "S" else ""
    present = np.ones(array.shape, bool) if missing is None else array != missing
    flat = np.flatnonzero(present)  # a fifth of np.nonzero's time on 2-d masks
    rows, positions = flat, np.zeros_like(flat)  # one id per example
    if array.shape[1] != 1:
        rows = flat // max(array.shape[1], 1)
        positions = flat - rows * array.shape[1]
    if weights is not None:
        weights = _float_weights(weights, "weights")
        if weights.shape != np.shape(values):
            raise ValueError(
                f"weights have shape {weights.shape}, values {np.shape(values)}: "
                "give one weight per id"
            )
        weights = weights.reshape(array.shape)[present]
    if array.dtype.kind in "US":  # hashed in place: no copy of the strings
        values = _fingerprint.fingerprint64(array)[present]
        return _build(rows, positions, values, array.shape, weights, size, hashed=True)
    return _build(rows, positions, array[present], array.shape, weights, size)


def from_ragged(
    rows: Sequence[Sequence],
    *,
    weights: Sequence[Sequence[float]] | None = None,
    size: int | None = None,
) -> SparseIds:
    """From ragged Python lists: one list of ids (ints, strings or bytes) per example.

    Example:
      >>> batch = from_ragged([[3, 4, 5], [], [-1]])
      >>> batch.row_ids[:5].tolist()
      [0, 0, 0, 2, 3]
    """
    lengths = [len(row) for row in rows]
    if weights is not None:
        if len(weights) != len(rows):
            raise ValueError(f"{len(weights)} rows of weights for {len(rows)} rows")
        for i, (row, row_weights) in enumerate(zip(rows, weights, strict=True)):
            if len(row_weights) != len(row):
                raise ValueError(
                    f"row {i} has {len(row)} ids but {len(row_weights)} weights"
                )
        weights = _float_weights(
            [w for row in weights for w in row] if any(lengths) else [], "weights"
        )
    flat = np.empty(sum(lengths), dtype=object)
    flat[:] = [value for row in rows for value in row]
    example = np.repeat(np.arange(len(rows)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths]) if rows else example
    dense_shape = (len(rows), max(lengths, default=0))
    return _build(example, position, flat, dense_shape, weights, size)


def from_coo(
    indices: np.ndarray,
    values: np.ndarray | Sequence,
    dense_shape: tuple[int, int],
    *,
    weights: np.ndarray | None = None,
    size: int | None = None,
) -> SparseIds:
    """From the parts of a `tf.SparseTensor`: `[nnz, 2]` indices, values, shape.

    Raises:
      ValueError: indices outside `dense_shape`, or values and weights not one
        per index.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1, 2)
    values = np.asarray(values)
    if values.shape != (len(indices),):
        raise ValueError(f"{values.size} values for {len(indices)} indices")
    batch, width = (int(d) for d in dense_shape)
    outside = (indices < 0).any(axis=1) | (indices[:, 0] >= batch)
    outside |= indices[:, 1] >= width
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"indices[{i}] = {indices[i].tolist()} is outside dense_shape "
            f"{[batch, width]}"
        )
    if weights is not None:
        weights = _float_weights(weights, "weights").reshape(-1)
    return _build(indices[:, 0], indices[:, 1], values, (batch, width), weights, size)
