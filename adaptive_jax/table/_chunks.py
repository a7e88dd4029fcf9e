"""A loop over the marked entries of a batch, a fixed-size chunk at a time.

Work that only some entries need (new keys, distinct rows) should cost in
proportion to them, but shapes are static under jit. `for_each_chunk` moves the
marked entries, in order, into chunks of a fixed size and runs a body on each;
the while loop carries the body's state, so that XLA updates big arrays in it in
place. With nothing marked, the body never runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics

Carry = TypeVar("Carry")


def for_each_chunk(
    marked: jax.Array,
    chunk_size: int,
    body: Callable[[Carry, jax.Array, jax.Array], Carry],
    carry: Carry,
) -> Carry:
    """Runs `body(carry, entries)` over the marked entries, `chunk_size` at a time.

    Args:
      marked: `[n] bool`, the entries to visit.
      chunk_size: a Python int >= 1.
      body: takes the carry, `[chunk_size] int32` indices of marked entries,
        in their order, padded with `n`, and the number of marked entries before
        the chunk; returns the new carry.
      carry: the initial carry.

    Returns:
      The final carry.
    """
    n = marked.shape[0]
    rank = _numerics.exclusive_count(marked)
    num_chunks = -(-jnp.sum(marked, dtype=jnp.int32) // chunk_size)
    # All the marked entries, in order, at the front of a buffer of whole chunks.
    size = -(-n // chunk_size) * chunk_size
    everyone = jnp.arange(n, dtype=jnp.int32)
    compact = jnp.full((size,), n, jnp.int32)
    compact = compact.at[jnp.where(marked, rank, size)].set(everyone, mode="drop")

    def one_chunk(state):
        chunk, carry = state
        offset = chunk * chunk_size
        entries = jax.lax.dynamic_slice_in_dim(compact, offset, chunk_size)
        return chunk + 1, body(carry, entries, offset)

    _, carry = jax.lax.while_loop(
        lambda state: state[0] < num_chunks, one_chunk, (jnp.int32(0), carry)
    )
    return carry
