"""The first occurrence of each entry's key in a batch, without a sort.

Entries hash their key into a scratch twice the batch size and a scatter-min
keeps the lowest index per slot; an entry whose slot went to another key hashes
again, with another seed, next round. Repeats of a key always share a slot, so
they settle together, on their first occurrence. O(batch) a round; a few rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from adaptive_jax.ids import _device_hash


def first_occurrence(words: Sequence[jax.Array], valid: jax.Array) -> jax.Array:
    """For each valid entry, the index of the first valid entry with its key.

    Args:
      words: the key, as `[k]` 32-bit words (a row id; a 64-bit key's hi, lo).
      valid: `[k] bool`; invalid entries get -1.

    Returns:
      `[k] int32`.
    """
    words = [w.astype(jnp.uint32) for w in words]
    k = words[0].shape[0]
    size = 1 << max(1, (2 * k - 1).bit_length())
    iota = jnp.arange(k, dtype=jnp.int32)
    mixed = words[0]
    for word in words[1:]:
        mixed = _device_hash.fmix32(mixed) ^ word

    def one_round(state):
        first, pending, round_ = state
        salt = (round_.astype(jnp.uint32) + 1) * jnp.uint32(0x9E3779B9)
        slot = (_device_hash.fmix32(mixed ^ salt) & jnp.uint32(size - 1)).astype(
            jnp.int32
        )
        scratch = jnp.full((size,), k, jnp.int32)
        scratch = scratch.at[jnp.where(pending, slot, size)].min(iota, mode="drop")
        winner = jnp.minimum(scratch[slot], k - 1)
        same = jnp.ones_like(pending)
        for word in words:
            same &= word[winner] == word
        settled = pending & same
        return jnp.where(settled, winner, first), pending & ~settled, round_ + 1

    first, _, _ = jax.lax.while_loop(
        lambda state: jnp.any(state[1]),
        one_round,
        (jnp.full((k,), -1, jnp.int32), valid, jnp.int32(0)),
    )
    return first
