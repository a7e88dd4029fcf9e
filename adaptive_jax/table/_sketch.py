"""Counts of ids in fixed-size state: a count-min sketch with conservative update.

`depth` rows of `width` counters; an id has one counter per row, chosen by an
independent hash, and its count is the least of them. The update is
conservative (Estan & Varghese): a batch raises an id's counters only up to its
estimate before the batch plus its occurrences in the batch, never beyond, so a
counter holds about the largest count of the ids that share it rather than the
sum of their counts. The estimate never falls below the true count. An id
never seen comes out at 1 or more (hence is admitted at `filter_freq = 2`)
only if each of its `depth` counters already holds a count; with `n` distinct
ids counted, that happens with probability about `(1 - exp(-n / width)) **
depth`, which sizes the sketch (`count_min_shape`). A counting Bloom filter is
the same structure with its `k` hashes in `k` rows, sized by the Bloom rule
(`bloom_shape`).

A stream never ends, and a sketch of fixed size fills up: once every counter
holds a count, every id looks frequent. So the sketch forgets: when the
distinct ids it holds reach `halve_at` (the number it was sized for), all its
counters are halved (rounding down: ids seen once are forgotten). It knows how
many ids it holds after that by counting, as ids are counted, those whose
estimate passes each power of two (`held`): the ids at 2 or more become the
ids it holds, those at 4 the ids at 2, and so on. A count is then a count of
the last `halve_at` distinct ids or so. (DeepRec's CounterFilter counts
forever, exactly, in a hash map that grows.)

Counters are unsigned integers just wide enough for the filter (`counter_dtype`:
uint8 up to a `filter_freq` of 255), and saturate instead of wrapping (at
2**31 - 1 for uint32).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _device_hash
from adaptive_jax.table import _chunks, _dedup

_SEED = 0x5CE7C4
_CHUNKS = 16  # counted entries go through in chunks of 1/16 of the batch


@struct.dataclass
class Sketch:
    """Counters, and how many distinct ids they hold.

    Attributes:
      counts: `[depth, width]` unsigned integers (`counter_dtype`).
      held: `[levels] float32`, `held[k]` the distinct ids whose estimate is
        at least `2**k` (`held[0]`: the ids it holds), one per bit of a
        counter (31 at most).
    """

    counts: jax.Array
    held: jax.Array

    @classmethod
    def create(cls, depth: int, width: int, dtype: jnp.dtype = jnp.uint8) -> Sketch:
        levels = min(8 * jnp.dtype(dtype).itemsize, 31)  # int32 arithmetic
        return cls(jnp.zeros((depth, width), dtype), jnp.zeros((levels,), jnp.float32))


def counter_dtype(filter_freq: int) -> np.dtype:
    """The narrowest unsigned counter that holds `filter_freq`: uint8 to 255,
    uint16 to 65,535, else uint32."""
    for dtype in (np.uint8, np.uint16):
        if filter_freq <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


def count_min_load(depth: int, false_positive_probability: float) -> float:
    """`n / width`: the distinct ids per counter of a row at which a new id
    finds all `depth` of its counters taken with the given probability,
    from `(1 - exp(-n / width)) ** depth = p`."""
    return -math.log1p(-(false_positive_probability ** (1.0 / depth)))


def count_min_shape(
    max_elements: int, depth: int, false_positive_probability: float
) -> tuple[int, int]:
    """A count-min sketch of `depth` rows for `max_elements` distinct ids at the
    given false-positive rate (see `count_min_load`)."""
    load = count_min_load(depth, false_positive_probability)
    return depth, max(1, math.ceil(max_elements / load))


def bloom_shape(
    max_elements: int, false_positive_probability: float
) -> tuple[int, int]:
    """A counting Bloom filter for `max_elements` ids at the given false-positive
    rate: `m = -n ln p / ln(2)**2` counters and `k = m / n ln 2` hashes, as `k`
    rows of `m / k`."""
    total = math.ceil(
        -max_elements * math.log(false_positive_probability) / math.log(2) ** 2
    )
    hashes = max(1, round(total / max_elements * math.log(2)))
    return hashes, max(1, math.ceil(total / hashes))


def _positions(sketch: Sketch, ids: ids_lib.Ids) -> jax.Array:
    """`[depth, n]` counter positions of each id, one per row."""
    depth, width = sketch.counts.shape
    return jnp.stack(
        [_device_hash.bucket(ids, width, seed=_SEED + row) for row in range(depth)]
    )


def _read(counts: jax.Array, positions: jax.Array) -> jax.Array:
    """`[n] int32`: the least of each id's counters."""
    rows = jnp.arange(counts.shape[0])[:, None]
    return jnp.min(counts[rows, positions], axis=0).astype(jnp.int32)


def estimate(sketch: Sketch, ids: ids_lib.Ids) -> jax.Array:
    """`[n] int32` estimated counts of the flat `ids` (never below the truth)."""
    return _read(sketch.counts, _positions(sketch, ids))


def _halved(counts: jax.Array, held: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every counter halved, rounding down (the ids seen once forgotten); the
    ids at `2**(k + 1)` or more are now those at `2**k`."""
    # Written as an update of the counters, which XLA does in place; a new
    # array (`counts >> 1`), or another read of them here, made it copy the
    # counters at every step, halving or not.
    counts = counts.at[:, :].set(counts >> jnp.asarray(1, counts.dtype))
    return counts, jnp.concatenate([held[1:], jnp.zeros((1,), held.dtype)])


def add(
    sketch: Sketch,
    ids: ids_lib.Ids,
    mask: jax.Array,
    *,
    halve_at: float = math.inf,
    weights: jax.Array | None = None,
) -> tuple[Sketch, jax.Array]:
    """Counts one occurrence of each of the flat `ids` where `mask` is True.

    The counted entries go through in chunks of `1 / _CHUNKS` of the batch
    (`_chunks.for_each_chunk`), so that the work follows them, not the batch:
    a chunk's repeats of a key are counted together (their first occurrence
    found by hashing, `_dedup`), and a later chunk sees the earlier chunks'
    counts, so every occurrence counts once. Then each entry reads its key's
    estimate from the counters, so that repeats agree.

    Args:
      sketch: the sketch.
      ids: `[n]` ids.
      mask: `[n] bool`, the occurrences to count.
      halve_at: when the distinct ids it holds reach this many, all counters
        are halved (after this batch's estimates are read).
      weights: `[n] int32`, occurrences each entry stands for (1 if None): an
        entry for the repeats of its key, merged before an exchange.

    Returns:
      `(sketch, counts)`: each counted id's estimate after this batch's
      occurrences (repeats in the batch all count; never below the truth); 0
      where `mask` is False.
    """
    n = mask.shape[0]
    if n == 0:
        return sketch, jnp.zeros((0,), jnp.int32)
    depth, width = sketch.counts.shape
    dtype = sketch.counts.dtype
    top = min(jnp.iinfo(dtype).max, 2**31 - 1)  # counts in int32
    amount = jnp.ones((n,), jnp.int32) if weights is None else weights.astype(jnp.int32)
    chunk = -(-n // _CHUNKS)
    rows = jnp.arange(depth, dtype=jnp.int32)[:, None]

    def count(carry, entries, offset):
        del offset
        counts, held, after = carry
        valid = entries < n
        at = jnp.minimum(entries, n - 1)
        positions = _positions(sketch, ids[at])
        before = jnp.where(valid, _read(counts, positions), 0)
        first = _dedup.first_occurrence((ids.hi[at], ids.lo[at]), valid)
        mine = jnp.where(valid, amount[at], 0)
        occurrences = jax.ops.segment_sum(mine, jnp.where(valid, first, chunk), chunk)
        target = jnp.minimum(before + occurrences[jnp.maximum(first, 0)], top)
        where = (rows, jnp.where(valid[None, :], positions, width))
        counts = counts.at[where].max(target[None, :].astype(dtype), mode="drop")
        # Each key once: the powers of two its estimate passed.
        once = valid & (first == jnp.arange(chunk, dtype=jnp.int32))
        powers = jnp.left_shift(1, jnp.arange(held.shape[0], dtype=jnp.int32))[None]
        passed = (
            once[:, None] & (before[:, None] < powers) & (target[:, None] >= powers)
        )
        held = held + jnp.sum(passed, axis=0, dtype=jnp.int32).astype(jnp.float32)
        return counts, held, after.at[entries].set(target, mode="drop")

    def read(after, entries, offset):
        del offset
        at = jnp.minimum(entries, n - 1)
        estimates = _read(counts, _positions(sketch, ids[at]))
        return after.at[entries].set(estimates, mode="drop")

    with jax.named_scope("aj.sketch.add"):
        start = (sketch.counts, sketch.held, jnp.zeros((n,), jnp.int32))
        counts, held, after = _chunks.for_each_chunk(mask, chunk, count, start)
        # A key counted in several chunks: its earlier entries read the total.
        after = jax.lax.cond(
            jnp.sum(mask, dtype=jnp.int32) > chunk,
            lambda a: _chunks.for_each_chunk(mask, chunk, read, a),
            lambda a: a,
            after,
        )
    # `after` is read before the halving writes: index the halving through it.
    full = (held[0] >= halve_at) & (jnp.min(after) >= 0)
    counts, held = jax.lax.cond(full, _halved, lambda c, h: (c, h), counts, held)
    return Sketch(counts, held), after
