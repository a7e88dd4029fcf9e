"""TensorFlow's Fingerprint64 buckets, on the host, bit for bit.

TensorFlow's `Fingerprint64` is farmhash's `Fingerprint64` of the UTF-8 bytes;
`tf.strings.to_hash_bucket_fast(s, n)` is `Fingerprint64(s) % n`, and DeepRec puts
an int id in bucket `to_hash_bucket_fast(as_string(id), n)` and keys a string in
its embedding variable by `Fingerprint64(s) % (2**63 - 1)`. Same functions here,
so that a model ported from TensorFlow or DeepRec lands its ids where it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

from adaptive_jax.ids import _bytes, _farmhash

INT64_MAX = np.iinfo(np.int64).max

CHUNK = 8192  # values hashed together

HashableValues: TypeAlias = "np.ndarray | Sequence[str | bytes | int]"
"""Strings, bytes or ints: a numpy array (any shape) or a (nested) list."""


def _as_array(values: HashableValues) -> np.ndarray:
    """A numpy array of the values, kind U, S, i, u or O; lists keep their types."""
    if isinstance(values, np.ndarray):
        array = values
    else:
        array = np.empty(np.shape(values), dtype=object)
        array[...] = values
    if array.dtype.kind not in "USiuO" or array.dtype == np.bool_:
        raise TypeError(
            "values to hash must be strings, bytes or integers, got dtype "
            f"{array.dtype}"
        )
    return array


def _unicode(array: np.ndarray) -> np.ndarray:
    """Fingerprints of a 1-d `U` array: ASCII values without a Python object
    each, the others through Python's UTF-8 encoder."""
    words, lanes = _bytes.from_unicode(array)
    if lanes is None:
        return _farmhash.fingerprint64(words)
    out = np.empty(array.size, np.uint64)
    out[lanes] = _farmhash.fingerprint64(words)
    others = np.ones(array.size, bool)
    others[lanes] = False
    encoded = [s.encode("utf-8") for s in array[others].tolist()]
    out[others] = _farmhash.fingerprint64(_bytes.from_encoded(encoded))
    return out


def _chunk_fingerprints(flat: np.ndarray) -> np.ndarray:
    """Fingerprints of a 1-d array of kind U, S, i, u or O."""
    kind = flat.dtype.kind
    if kind == "S":
        return _farmhash.fingerprint64(_bytes.from_bytes_array(flat))
    if kind == "U":
        return _unicode(flat)
    if kind in "iu":
        return _farmhash.fingerprint64(_bytes.from_integers(flat))
    return _farmhash.fingerprint64(_bytes.from_objects(flat.tolist()))


def _flat_fingerprints(flat: np.ndarray) -> np.ndarray:
    """Fingerprints of a 1-d array, `CHUNK` values at a time: numpy's
    temporaries then stay small enough for the allocator to reuse (a fresh
    large array costs a page fault per 4 KiB, more than the arithmetic)."""
    if flat.size <= CHUNK:
        return _chunk_fingerprints(flat)
    out = np.empty(flat.size, np.uint64)
    for begin in range(0, flat.size, CHUNK):
        out[begin : begin + CHUNK] = _chunk_fingerprints(flat[begin : begin + CHUNK])
    return out


def fingerprint64(values: HashableValues) -> np.ndarray:
    """TensorFlow's `Fingerprint64` of each value, as `np.uint64`.

    Strings hash their UTF-8 bytes, bytes themselves, ints their decimal string.

    Args:
      values: strings, bytes or ints, as a numpy array of any shape or a list.

    Returns:
      `np.uint64` array of the shape of `values`.

    Raises:
      TypeError: floats, bools or other objects; the message names the dtype.

    Example:
      >>> int(fingerprint64(["hello"])[0])
      13009744463427800296
    """
    array = _as_array(values)
    if array.size == 0:
        return np.zeros(array.shape, np.uint64)
    return _flat_fingerprints(array.reshape(-1)).reshape(array.shape)


def _check_num_buckets(num_buckets: int) -> int:
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int | np.integer):
        raise ValueError(f"num_buckets must be an int, got {num_buckets!r}")
    if not 1 <= num_buckets <= INT64_MAX:
        raise ValueError(f"num_buckets must be in [1, 2**63 - 1], got {num_buckets}")
    return int(num_buckets)


def to_hash_bucket_fast(values: HashableValues, num_buckets: int) -> np.ndarray:
    """`tf.strings.to_hash_bucket_fast`: `Fingerprint64(value) % num_buckets`.

    Ints go through their decimal string, as `tf.strings.as_string` writes it, so
    this is also DeepRec's static bucket of an int id.

    Args:
      values: strings, bytes or ints, as a numpy array of any shape or a list.
      num_buckets: a Python int in `[1, 2**63 - 1]`.

    Returns:
      `np.int64` buckets in `[0, num_buckets)`, the shape of `values`.

    Raises:
      TypeError: floats, bools or other objects; the message names the dtype.
      ValueError: `num_buckets` < 1.

    Example:
      >>> to_hash_bucket_fast(["hello", "a"], 100).tolist()
      [96, 39]
      >>> to_hash_bucket_fast(np.array([0, -1]), 100).tolist()
      [35, 30]
    """
    num_buckets = _check_num_buckets(num_buckets)
    return (fingerprint64(values) % np.uint64(num_buckets)).astype(np.int64)


def string_to_key(values: HashableValues) -> np.ndarray:
    """DeepRec's embedding-variable key of a string: `Fingerprint64(s) % (2**63 - 1)`.

    Returns:
      `np.int64` keys in `[0, 2**63 - 1)`, the shape of `values`.
    """
    return to_hash_bucket_fast(values, INT64_MAX)
