"""Counts of ids in fixed-size state: a count-min sketch (Cormode & Muthukrishnan).

`depth` rows of `width` counters; an id adds 1 to one counter per row, chosen by
an independent hash, and its count is the least of its counters. The estimate
never falls below the true count and errs above it by about `e / width` of all
the counts added, with probability `1 - exp(-depth)`. A counting Bloom filter is
the same structure with its `k` hashes in `k` rows (a partitioned one), sized
from the expected number of ids and the false-positive rate.

A stream never ends, and a sketch of fixed size fills up: once every counter
holds a few counts, every id looks frequent. So the sketch forgets, as TinyLFU's
does: when the counts it holds reach `halve_at`, all its counters are halved, and
a count is the recent count of an id. (DeepRec's CounterFilter counts forever,
exactly, in a hash map that grows.)

Counters are float32: adding 1 to one at 2**24 leaves it there, so they saturate
instead of wrapping, at no cost, and halve exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _device_hash

_SEED = 0x5CE7C4


@struct.dataclass
class Sketch:
    """Counters, and the counts they hold since they were last halved.

    Attributes:
      counts: `[depth, width] float32`.
      held: `[] float32`, the counts added to each row since the last halving.
    """

    counts: jax.Array
    held: jax.Array

    @classmethod
    def create(cls, depth: int, width: int) -> Sketch:
        return cls(jnp.zeros((depth, width), jnp.float32), jnp.zeros([], jnp.float32))


def count_min_shape(capacity: int, depth: int = 3) -> tuple[int, int]:
    """A count-min sketch for a dynamic table of `capacity` rows: `depth` rows of
    the next power of two at or above the capacity (at least 1,024)."""
    return depth, max(1024, 1 << (capacity - 1).bit_length())


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
    """`[depth, n]` flat counter positions of each id, one per row."""
    depth, width = sketch.counts.shape
    rows = [
        row * width + _device_hash.bucket(ids, width, seed=_SEED + row)
        for row in range(depth)
    ]
    return jnp.stack(rows)


def estimate(sketch: Sketch, ids: ids_lib.Ids) -> jax.Array:
    """`[n] int32` estimated counts of the flat `ids` (never below the truth)."""
    flat = sketch.counts.reshape(-1)
    return jnp.min(flat[_positions(sketch, ids)], axis=0).astype(jnp.int32)


def add(
    sketch: Sketch,
    ids: ids_lib.Ids,
    mask: jax.Array,
    *,
    halve_at: float = math.inf,
    weights: jax.Array | None = None,
) -> tuple[Sketch, jax.Array]:
    """Counts one occurrence of each of the flat `ids` where `mask` is True.

    Args:
      sketch: the sketch.
      ids: `[n]` ids.
      mask: `[n] bool`, the occurrences to count.
      halve_at: when a row of counters holds this many counts, all counters are
        halved (after this batch's estimates are read).
      weights: `[n] int32`, occurrences each entry stands for (1 if None): an
        entry for the repeats of its key, merged before an exchange.

    Returns:
      `(sketch, counts)`: each counted id's estimate after this batch's
      occurrences (repeats in the batch all count); 0 where `mask` is False.
    """
    positions = _positions(sketch, ids)
    flat = sketch.counts.reshape(-1)
    amount = 1.0 if weights is None else weights.astype(jnp.float32)[None, :]
    flat = flat.at[jnp.where(mask[None, :], positions, flat.size)].add(
        amount, mode="drop"
    )
    # The others read counter 0, which stays in cache.
    counts = jnp.min(flat[jnp.where(mask[None, :], positions, 0)], axis=0)
    counts = jnp.where(mask, counts, 0.0).astype(jnp.int32)
    counted = mask if weights is None else jnp.where(mask, weights, 0)
    held = sketch.held + jnp.sum(counted, dtype=jnp.float32)
    # `counts` is read before the halving writes: index the halving through it.
    full = (held >= halve_at) & (jnp.min(counts) >= 0)
    flat, held = jax.lax.cond(
        full, lambda f, h: (f * 0.5, h * 0.5), lambda f, h: (f, h), flat, held
    )
    return Sketch(flat.reshape(sketch.counts.shape), held), counts
