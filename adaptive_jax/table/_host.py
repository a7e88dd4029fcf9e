"""A dynamic table built on the host, with numpy: distinct keys at rows 0, 1, ...

A serving export holds a column's live keys in order; serving looks them up
with `lookup`, the training lookup. Inserting them with `lookup_or_insert`
compiles that insertion (about 200 kernels, seconds) for each index size
only to place keys once; here numpy places them, in the same layout
(`_index`: each key in one of its two buckets, with its tag and row), so that
`lookup` finds each key at its row as it would in a table trained to hold it.
The slots may differ from those an insertion would pick: a lookup checks
every way of both buckets, so any placement with a key in one of its buckets
reads the same rows.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from adaptive_jax.ids import _device_hash
from adaptive_jax.table import _index
from adaptive_jax.table._table import DynamicTable


def _hash32(hi: np.ndarray, lo: np.ndarray, seed: int) -> np.ndarray:
    """`_device_hash.hash32` of the words (hi, lo), in numpy."""
    salt = np.uint32(
        (seed * _device_hash._SEED_STRIDE + _device_hash._SEED_OFFSET) & 0xFFFFFFFF
    )
    return _device_hash.fmix32(lo ^ _device_hash.fmix32(hi ^ salt))


def _reduce_range(hashes: np.ndarray, n: int) -> np.ndarray:
    """`_device_hash.reduce_range`, in numpy: `(h * n) >> 32`."""
    return ((hashes.astype(np.uint64) * np.uint64(n)) >> np.uint64(32)).astype(np.int32)


def candidates(hi: np.ndarray, lo: np.ndarray, num_buckets: int) -> _index.Candidates:
    """`_index.candidates` of keys given as uint32 words, in numpy."""
    half = num_buckets // 2
    h_left = _hash32(hi, lo, _index._SEED_LEFT)
    h_tag = _hash32(hi, lo, _index._SEED_TAG)
    rotated = (h_tag >> np.uint32(16)) | (h_tag << np.uint32(16))
    h_right = _device_hash.fmix32(h_left ^ rotated)
    return _index.Candidates(
        left=_reduce_range(h_left, half),
        right=half + _reduce_range(h_right, num_buckets - half),
        tag=(h_tag | np.uint32(1)).view(np.int32),
    )


def holding(keys: np.ndarray, capacity: int) -> DynamicTable:
    """A table of `capacity` rows holding the distinct int64 `keys` at rows
    0, 1, ..., as `lookup_or_insert` of them in order would.

    Each round, every key not yet placed picks the emptier of its buckets, and
    the keys of a bucket take its free ways in order; those it has no room for
    pick again the next round (a few rounds).

    Raises:
      ValueError: more keys than rows, keys that are not distinct, or a key
        whose buckets are both full (about never at a load of one half).
    """
    keys = np.asarray(keys, np.int64)
    n = keys.size
    if n > capacity:
        raise ValueError(f"{n} keys do not fit a table of {capacity} rows")
    if np.unique(keys).size != n:
        raise ValueError("the keys are not distinct")
    bits = keys.view(np.uint64)
    hi = (bits >> np.uint64(32)).astype(np.uint32)
    lo = (bits & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    buckets = _index.num_buckets(capacity)
    cand = candidates(hi, lo, buckets)
    slots = np.full((buckets, 2 * _index.WAYS), _index.FREE_TAG, np.int32)
    slots[:, _index.WAYS :] = _index.EMPTY
    fill = np.zeros(buckets, np.int32)
    todo = np.arange(n)
    while todo.size:
        left, right = cand.left[todo], cand.right[todo]
        if np.any((fill[left] >= _index.WAYS) & (fill[right] >= _index.WAYS)):
            raise ValueError("a key found both its buckets full")
        bucket = np.where(fill[left] <= fill[right], left, right)
        # The keys of a bucket take its next ways in order, while they last.
        order = np.argsort(bucket, kind="stable")
        sorted_buckets = bucket[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_buckets)) + 1]
        sizes = np.diff(np.r_[starts, order.size])
        rank = np.arange(order.size) - np.repeat(starts, sizes)
        way = fill[sorted_buckets] + rank
        fits = way < _index.WAYS
        placed, at, way = todo[order[fits]], sorted_buckets[fits], way[fits]
        slots[at, way] = cand.tag[placed]
        slots[at, _index.WAYS + way] = placed
        fill += np.bincount(at, minlength=buckets).astype(np.int32)
        todo = np.sort(todo[order[~fits]])
    row_keys = np.zeros((capacity, 2), np.uint32)
    row_keys[:n, 0], row_keys[:n, 1] = hi, lo
    touched = (np.arange(capacity) < n).astype(np.int32)
    return DynamicTable(
        row_keys=jnp.asarray(row_keys),
        slots=jnp.asarray(slots),
        free_list=jnp.asarray(np.arange(capacity - 1, -1, -1, dtype=np.int32)),
        num_free=jnp.asarray(capacity - n, jnp.int32),
        freq=jnp.asarray(touched),
        last_step=jnp.zeros((capacity,), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        inserts=jnp.asarray(n, jnp.int32),
        removals=jnp.zeros((), jnp.int32),
        overflows=jnp.zeros((), jnp.int32),
    )
