"""Combiners: one embedding per example from the embeddings of its ids.

As TensorFlow's `embedding_lookup_sparse`, with per-id weights `w` (1 without):
`sum`: sum of w * e; `mean`: that over sum of w; `sqrtn`: over sqrt(sum of w**2).
Any number of ids per example; an example without ids (or whose weights sum to
0) gets zeros, and a batch of no examples a `[0, dim]` embedding. Each id's
contribution is a scale times its embedding, so the gradient of an id's
embedding is its scale times the gradient of its example's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COMBINERS = ("sum", "mean", "sqrtn")


def check_combiner(combiner: str, column: str) -> None:
    if combiner not in COMBINERS:
        raise ValueError(
            f"column '{column}': unknown combiner {combiner!r}, expected one of "
            f"{COMBINERS}"
        )


def scales(
    segments: jax.Array,
    weights: jax.Array | None,
    valid: jax.Array,
    num_segments: int,
    combiner: str,
) -> jax.Array:
    """The factor of each id's embedding in its example's.

    Args:
      segments: `[n] int32`, the example of each id (out of range: dropped).
      weights: `[n]` per-id weights, or None for ones.
      valid: `[n] bool`; invalid ids get 0.
      num_segments: the number of examples.
      combiner: "sum", "mean" or "sqrtn".

    Returns:
      `[n] float32`.
    """
    ones = jnp.ones(segments.shape, jnp.float32)
    w = jnp.where(valid, ones if weights is None else weights.astype(jnp.float32), 0.0)
    if combiner == "sum" or num_segments == 0:  # no examples: no id is valid
        return w
    squares = w * w if combiner == "sqrtn" else w
    total = jax.ops.segment_sum(squares, segments, num_segments)
    total = total.at[segments].get(mode="fill", fill_value=0.0)
    denominator = jnp.sqrt(total) if combiner == "sqrtn" else total
    return jnp.where(
        denominator != 0, w / jnp.where(denominator != 0, denominator, 1.0), 0.0
    )


def combine(
    values: jax.Array, segments: jax.Array, scale: jax.Array, num_segments: int
) -> jax.Array:
    """`[num_segments, dim]`: the scaled sum of each example's id embeddings."""
    return jax.ops.segment_sum(values * scale[:, None], segments, num_segments)


def entry_gradients(
    d_combined: jax.Array, segments: jax.Array, scale: jax.Array
) -> jax.Array:
    """`[n, dim]`: the gradient of each id's embedding, from its example's."""
    if d_combined.shape[0] == 0:  # no examples: nothing to train
        return jnp.zeros(segments.shape + d_combined.shape[1:], d_combined.dtype)
    gathered = d_combined.at[segments].get(mode="fill", fill_value=0.0)
    return gathered * scale[:, None].astype(d_combined.dtype)
