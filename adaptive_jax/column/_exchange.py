"""Fixed-size exchange buffers between the devices of a mesh axis.

An entry bound for destination `t` (a partition, or a device) takes slot
`t * limit + rank`, its rank among the entries bound for `t`; the buffers travel
to their owners by one `all_to_all`, and the answers come back by another, in
the same slots. On one device (`axis_name` None) both moves are reshapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_ONE_HOT_DESTINATIONS = 64  # up to this many, ranks by a one-hot prefix sum


def ranks(destinations: jax.Array, send: jax.Array, count: int) -> jax.Array:
    """Each sent entry's rank among the sent entries bound for its destination,
    in order (`destinations` in `[0, count)`)."""
    n = destinations.shape[0]
    if count <= _ONE_HOT_DESTINATIONS:
        targets = jnp.arange(count)[None]
        one_hot = ((destinations[:, None] == targets) & send[:, None]).astype(jnp.int32)
        before = jnp.cumsum(one_hot, axis=0, dtype=jnp.int32) - one_hot
        return jnp.take_along_axis(before, destinations[:, None], axis=1)[:, 0]
    # Grouped by a sort of `destination * n + index`: one int32 operand.
    order = jnp.sort(jnp.where(send, destinations, count) * n + jnp.arange(n))
    grouped, entry = order // n, order % n
    counts = jnp.zeros(count + 1, jnp.int32).at[grouped].add(1)
    starts = jnp.cumsum(counts) - counts
    return jnp.zeros(n, jnp.int32).at[entry].set(jnp.arange(n) - starts[grouped])


def packed(values: jax.Array, slot: jax.Array, size: int, fill: int = 0) -> jax.Array:
    """`values` `[n, ...]` into a `[size, ...]` buffer of `fill` at `slot`
    (slots past the end: not sent)."""
    buffer = jnp.full((size,) + values.shape[1:], fill, values.dtype)
    return buffer.at[slot].set(values, mode="drop", unique_indices=True)


def summed(values: jax.Array, slot: jax.Array, size: int) -> jax.Array:
    """`values` `[n, ...]` summed into a zeroed `[size, ...]` buffer at `slot`:
    entries that share a slot (the repeats of a key) send their sum."""
    buffer = jnp.zeros((size,) + values.shape[1:], values.dtype)
    return buffer.at[slot].add(values, mode="drop")


def unpacked(buffer: jax.Array, slot: jax.Array) -> jax.Array:
    """The inverse of `packed`: each entry's answer, zero where it sent none."""
    return buffer.at[slot].get(mode="fill", fill_value=0)


def to_owners(x: jax.Array, here: int, axis_name: str | None) -> jax.Array:
    """`[destinations * limit, ...]` -> `[here, sources * limit, ...]`, on the
    device owning those destinations (`here` of them on each device)."""
    if axis_name is None:
        return x.reshape((here, -1) + x.shape[1:])
    total = x.shape[0]
    devices = jax.lax.axis_size(axis_name)
    limit = total // (devices * here)
    x = x.reshape((devices, here, limit) + x.shape[1:])
    x = jax.lax.all_to_all(x, axis_name, 0, 0, tiled=True)  # leading: the source
    return jnp.swapaxes(x, 0, 1).reshape((here, devices * limit) + x.shape[3:])


def to_sources(y: jax.Array, axis_name: str | None) -> jax.Array:
    """The way back: `[here, sources * limit, ...]` -> `[destinations * limit,
    ...]`."""
    here = y.shape[0]
    if axis_name is None:
        return y.reshape((-1,) + y.shape[2:])
    devices = jax.lax.axis_size(axis_name)
    limit = y.shape[1] // devices
    y = y.reshape((here, devices, limit) + y.shape[2:])
    y = jax.lax.all_to_all(jnp.swapaxes(y, 0, 1), axis_name, 0, 0, tiled=True)
    return y.reshape((-1,) + y.shape[3:])
