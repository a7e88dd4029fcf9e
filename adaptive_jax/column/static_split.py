"""A static table split by rows over a mesh axis.

With `sharding.Layout(split_static=...)`, device `d` of D holds buckets
`[d * B / D, (d + 1) * B / D)` of a column's static table (and of its slots),
instead of a replica of all B. A lookup sends each entry's bucket to its owner
and the row back (two all-to-alls); the sparse update sends each gradient to
its bucket's owner (one), which updates its rows alone. The buffers hold every
local entry for every destination, so nothing can overflow: each device sends
D times its entries each way (twice the bytes of the replicated table's
all-gather; docs/scaling.md), for a table D times smaller per device and an
update of its own rows only.

The functions here are per-device bodies, under `jax.shard_map` with the mesh
axis as `axis_name` (None on one device: the whole table is here).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax.column import _exchange


def devices(axis_name: str | None) -> int:
    """Devices along the axis (1 without one)."""
    return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def num_buckets(static: Any, axis_name: str | None) -> int:
    """The buckets of the whole table, from this device's rows."""
    return static.values.shape[0] * devices(axis_name)


def _slots(rows: jax.Array, send: jax.Array, local: int, axis_name: str | None):
    """Each entry's slot in a `[devices * n]` buffer bound for its row's owner."""
    n, count = rows.shape[0], devices(axis_name)
    owner = jnp.where(send, rows // local, 0)
    rank = _exchange.ranks(owner, send, count)
    return jnp.where(send, owner * n + rank, count * n), count * n


def read(
    static: Any,
    buckets: jax.Array,
    wanted: jax.Array,
    *,
    axis_name: str | None,
    with_slots: bool = False,
) -> tuple[jax.Array, Any]:
    """The rows of `buckets` (global ids) for the entries `wanted`, from their
    owners: `(values [n, dim], slots or None)`, zeros where not wanted.

    Args:
      static: this device's rows of the `adaptive.StaticTable`.
      buckets: `[n] int32`, each entry's bucket in the whole table.
      wanted: `[n] bool`, the entries to read.
      axis_name: the mesh axis the table is split over.
      with_slots: also read the buckets' optimizer slots ("copy" migration).
    """
    local = static.values.shape[0]
    slot, size = _slots(buckets, wanted, local, axis_name)
    rows = _exchange.to_owners(
        _exchange.packed(buckets % local, slot, size), 1, axis_name
    )[0]
    tables = (static.values,) + (tuple(static.slots) if with_slots else ())
    gathered = jnp.concatenate(
        [t.at[rows].get(mode="promise_in_bounds") for t in tables], axis=1
    )
    answers = _exchange.unpacked(_exchange.to_sources(gathered[None], axis_name), slot)
    dim = static.values.shape[1]
    parts = [answers[:, i * dim : (i + 1) * dim] for i in range(len(tables))]
    slots = type(static.slots)(*parts[1:]) if with_slots else None
    return parts[0], slots


def routed_gradients(
    rows: jax.Array, grads: jax.Array, local: int, axis_name: str | None
) -> tuple[jax.Array, jax.Array]:
    """The gradients of bucket `rows` (global ids; the number of buckets for
    none), sent to their owners: `(local rows, grads)` on each owner, `local`
    for none, in the order of the sources."""
    send = rows < local * devices(axis_name)
    slot, size = _slots(rows, send, local, axis_name)
    received = _exchange.packed(rows % local, slot, size, fill=local)
    received = _exchange.to_owners(received, 1, axis_name)[0]
    grads = _exchange.to_owners(_exchange.packed(grads, slot, size), 1, axis_name)[0]
    return received, grads
