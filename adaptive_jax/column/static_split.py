"""A static table split by rows over a mesh axis.

With `sharding.Layout(split_static=...)`, device `d` of D holds buckets
`[d * B / D, (d + 1) * B / D)` of a column's static table (and of its slots),
instead of a replica of all B. A lookup sends each distinct bucket of a device
to its owner and the row back (two all-to-alls); the sparse update sends each
distinct bucket's summed gradient to its owner (one), which updates its rows
alone. The buffers hold `limit` distinct buckets per (source device, owner)
(`Layout(split_static_limits=...)`, `sharding.suggest_split_limits`); in a
step where some device has more, the whole mesh takes buffers of every entry
instead (`lax.cond`), so no lookup and no gradient is ever lost, and the
statistics count the entries that did not fit (`split_overflows`). Without a
limit the buffers hold every local entry for every destination: D times a
device's entries each way (docs/scaling.md).

The functions here are per-device bodies, under `jax.shard_map` with the mesh
axis as `axis_name` (None on one device: the whole table is here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax.column import _exchange
from adaptive_jax.table import _dedup


def devices(axis_name: str | None) -> int:
    """Devices along the axis (1 without one)."""
    return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def num_buckets(static: Any, axis_name: str | None) -> int:
    """The buckets of the whole table, from this device's rows."""
    return static.values.shape[0] * devices(axis_name)


class Plan(NamedTuple):
    """Where a device's entries go: each distinct bucket to its owner, once."""

    first: jax.Array  # [n] int32, each entry's first entry of its bucket; -1: none
    distinct: jax.Array  # [n] bool, the entries that travel (first of a bucket)
    owner: jax.Array  # [n] int32, the device that holds the entry's bucket
    rank: jax.Array  # [n] int32, a distinct entry's rank among those to its owner
    most: jax.Array  # [] int32, the most entries any device sends any owner


def plan(
    buckets: jax.Array, send: jax.Array, local: int, axis_name: str | None
) -> Plan:
    """The plan of the entries `send` of `buckets` (global ids): a device's
    repeats of a bucket travel as one entry (and carry their gradients'
    sum), so the buffers follow distinct buckets."""
    n, count = buckets.shape[0], devices(axis_name)
    first = _dedup.first_occurrence((buckets,), send)
    distinct = send & (first == jnp.arange(n, dtype=jnp.int32))
    owner = jnp.where(distinct, buckets // local, 0)
    rank = _exchange.ranks(owner, distinct, count)
    most = jnp.max(jnp.where(distinct, rank + 1, 0), initial=0)
    if axis_name is not None:
        most = jax.lax.pmax(most, axis_name)
    return Plan(first, distinct, owner, rank, most)


def _capacity(n: int, limit: int | None) -> int:
    return n if limit is None else max(1, min(limit, n))


def _slots(route: Plan, capacity: int, count: int) -> tuple[jax.Array, int]:
    """Each distinct entry's slot in a `[count * capacity]` buffer bound for its
    owner; `count * capacity` (not sent) for the others."""
    fits = route.distinct & (route.rank < capacity)
    slot = route.owner * capacity + route.rank
    return jnp.where(fits, slot, count * capacity), count * capacity


def _bounded(limit: int | None, n: int, route: Plan, bounded, exact):
    """`bounded()` when every device's distinct entries for every owner fit
    `limit` (the whole mesh decides together), else `exact()`: the buffers
    of every entry. Without a limit below `n`, `exact()`."""
    if limit is None or limit >= n:
        return exact()
    return jax.lax.cond(route.most <= limit, bounded, exact)


def overflows(route: Plan, limit: int | None, axis_name: str | None) -> jax.Array:
    """`[] int32`: the distinct entries, over the mesh, that did not fit the
    buffers of `limit` (and made the step take the exact exchange)."""
    if limit is None:
        return jnp.zeros([], jnp.int32)
    over = jnp.sum(route.distinct & (route.rank >= limit), dtype=jnp.int32)
    return over if axis_name is None else jax.lax.psum(over, axis_name)


def read(
    static: Any,
    buckets: jax.Array,
    wanted: jax.Array,
    *,
    axis_name: str | None,
    with_slots: bool = False,
    limit: int | None = None,
) -> tuple[jax.Array, Any, jax.Array]:
    """The rows of `buckets` (global ids) for the entries `wanted`, from their
    owners: `(values [n, dim], slots or None, overflows)`, zeros where not
    wanted.

    Args:
      static: this device's rows of the `adaptive.StaticTable`.
      buckets: `[n] int32`, each entry's bucket in the whole table.
      wanted: `[n] bool`, the entries to read.
      axis_name: the mesh axis the table is split over.
      with_slots: also read the buckets' optimizer slots ("copy" migration).
      limit: distinct buckets per (source device, owner) in the buffers; when
        some device has more, the step reads through buffers of every entry
        instead (never a lookup lost; `overflows` counts them). None: those.
    """
    n, local, count = buckets.shape[0], static.values.shape[0], devices(axis_name)
    route = plan(buckets, wanted, local, axis_name)
    tables = (static.values,) + (tuple(static.slots) if with_slots else ())

    def exchange(capacity: int) -> jax.Array:
        slot, size = _slots(route, capacity, count)
        rows = _exchange.to_owners(
            _exchange.packed(buckets % local, slot, size), 1, axis_name
        )[0]
        gathered = jnp.concatenate(
            [t.at[rows].get(mode="promise_in_bounds") for t in tables], axis=1
        )
        return _exchange.unpacked(_exchange.to_sources(gathered[None], axis_name), slot)

    answers = _bounded(
        limit,
        n,
        route,
        lambda: exchange(_capacity(n, limit)),
        lambda: exchange(n),
    )
    answers = jnp.where(wanted[:, None], answers[jnp.maximum(route.first, 0)], 0)
    dim = static.values.shape[1]
    parts = [answers[:, i * dim : (i + 1) * dim] for i in range(len(tables))]
    slots = type(static.slots)(*parts[1:]) if with_slots else None
    return parts[0], slots, overflows(route, limit, axis_name)


def update(
    static: Any,
    rows: jax.Array,
    grads: jax.Array,
    apply: Callable[[Any, jax.Array, jax.Array], Any],
    *,
    axis_name: str | None,
    limit: int | None = None,
) -> Any:
    """Each device's update of its own rows: the gradients of bucket `rows`
    (global ids; the number of buckets for none), a device's repeats of a
    bucket summed, sent to their owners, and `apply(static, local rows,
    grads)` there (`local` rows for none). With `limit` as in `read`: the
    buffers of `limit` distinct buckets per (source device, owner) when every
    device fits, else of every entry; never a gradient lost."""
    n, local, count = rows.shape[0], static.values.shape[0], devices(axis_name)
    send = rows < local * count
    route = plan(rows, send, local, axis_name)
    summed = (
        jnp.zeros_like(grads)
        .at[jnp.where(send, route.first, n)]
        .add(grads, mode="drop")
    )

    def exchange_and_apply(capacity: int) -> Any:
        slot, size = _slots(route, capacity, count)
        received = _exchange.packed(rows % local, slot, size, fill=local)
        received = _exchange.to_owners(received, 1, axis_name)[0]
        sent = _exchange.packed(summed, slot, size)
        return apply(static, received, _exchange.to_owners(sent, 1, axis_name)[0])

    return _bounded(
        limit,
        n,
        route,
        lambda: exchange_and_apply(_capacity(n, limit)),
        lambda: exchange_and_apply(n),
    )
