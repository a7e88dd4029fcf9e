"""A column whose dynamic table is split into partitions, on one device or a mesh.

`partition_num = P` splits a column's dynamic table (and its admission sketch)
into P partitions: every leaf of them has a leading partition axis. A key's
partition is fixed by its virtual bucket (`hashing.partition`): another P moves
whole virtual buckets. On a mesh of D devices each device holds P / D
partitions (the leading axis sharded); the entries of a lookup travel to the
device that owns their key, and their rows back, by two all-to-alls. A
device's repeats of a key travel as one entry, which carries their count (the
owner's frequencies and admission counts add it) and whose row comes back to
them all; their gradients travel summed. The buffers have a fixed size:
`limit` entries per (source device, partition). An entry past its buffer's
limit is served, and trained, by its static bucket (in a plain dynamic column
it reads the default value), and the statistics count it, with its repeats, in
`exchange_overflows`: never dropped, never an error. On one device the exchange
is a reshape.

The static table is replicated: every device reads its buckets locally, and the
sparse update of the buckets is applied on every device with the entries of all
devices (an all-gather), so that the replicas stay equal. Or it is split by rows
over the mesh (`static_split`): every entry's bucket row is read from its owner
first, and travels with the key, as the row that a new key starts from.

The functions here are the per-device bodies; `feature_column` calls them, and
`sharding` wraps them in `jax.shard_map` with the mesh's axis as `axis_name`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax.column import (
    _exchange,
    _migration,
    adaptive,
    combiners,
    static_split,
    statistics,
)
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.column import eviction as eviction_lib
from adaptive_jax.ids import _device_hash
from adaptive_jax.table import _dedup


def stacked(tree: Any, num_partitions: int) -> Any:
    """`num_partitions` copies of a pytree of arrays along a new leading axis,
    each leaf its own buffer (so that the state can be donated)."""
    return jax.tree.map(lambda x: jnp.repeat(x[None], num_partitions, axis=0), tree)


def each_partition(fn: Any) -> Any:
    """`fn` mapped over the leading partition axis of its arguments. With one
    partition here (P = devices), a plain call on the squeezed arguments: a
    `vmap` of size 1 would copy the tables' index arrays every step."""

    def mapped(*args):
        if jax.tree.leaves(args)[0].shape[0] != 1:
            return jax.vmap(fn)(*args)
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return mapped


def is_partitioned(dynamic: ev_lib.EmbeddingVariable | None) -> bool:
    """Whether a dynamic table has a leading partition axis."""
    return dynamic is not None and dynamic.values.ndim == 3


def partition_count(state: adaptive.ColumnState) -> int:
    """The partitions of a partitioned column's state on this device."""
    return state.dynamic.values.shape[0]


class Routes(NamedTuple):
    """Where each entry goes in the exchange."""

    slot: jax.Array  # [n] int32, partition * limit + rank; P * limit: not sent
    overflow: jax.Array  # [n] bool, to be sent, but its buffer was full


def routes(
    keys: ids_lib.Ids, send: jax.Array, num_partitions: int, limit: int
) -> Routes:
    """The exchange slots of the entries `send` of flat `keys`."""
    partitions = _device_hash.partition(keys, num_partitions)
    rank = _exchange.ranks(partitions, send, num_partitions)
    fits = send & (rank < limit)
    slot = jnp.where(fits, partitions * limit + rank, num_partitions * limit)
    return Routes(slot, send & ~fits)


_TRAINED, _READ, _REFUSED, _NEW = 1, 2, 4, 8  # the flags of an entry, sent back


def lookup(
    state: adaptive.ColumnState,
    inputs: adaptive.ColumnIds,
    options: adaptive.StepOptions,
    placement: adaptive.Placement = adaptive.ONE_DEVICE,
    *,
    num_partitions: int,
) -> tuple[jax.Array, adaptive.ColumnState, adaptive.Residuals]:
    """`adaptive.lookup` for a partitioned column: the entries go to the
    partition of their key and back. Jittable; under `shard_map`, the
    partitions are split over `placement.axis_name`.

    Args:
      state: the column's state, this device's partitions of it.
      inputs: this device's ids.
      options: as `adaptive.lookup`.
      placement: the mesh axis (None on one device), whether the static table
        is split by rows over it, and `exchange_limit`, entries per (source
        device, partition) buffer (None: the local batch's size, no overflow
        possible).
      num_partitions: P, the column's partitions in all.

    Returns:
      `(embeddings [local batch, dim], state, residuals)`.
    """
    axis_name, migration = placement.axis_name, options.migration
    batch = inputs.ids
    n = batch.valid.shape[0]
    limit = placement.exchange_limit
    limit = n if limit is None else min(limit, n)
    here = partition_count(state)
    size = num_partitions * limit
    routed, by_policy = adaptive.routing(state, inputs, options.admission)
    keys = batch.values
    # The repeats of a key on this device travel as one entry, which counts them
    # (the owner's frequencies and admission counts) and comes back to them all.
    first = _dedup.first_occurrence((keys.hi, keys.lo), routed)
    merged = routed & (first == jnp.arange(n, dtype=jnp.int32))
    repeats = (
        jnp.zeros(n, jnp.int32).at[jnp.where(routed, first, n)].add(1, mode="drop")
    )
    route = routes(keys, merged, num_partitions, limit)
    own = jnp.maximum(first, 0)
    slot = jnp.where(routed, route.slot[own], size)
    overflow = routed & route.overflow[own]
    bucket_values = split_overflows = None
    if placement.split_static and state.static is not None:
        bucket_values, bucket_slots, split_overflows = static_split.read(
            state.static,
            inputs.buckets,
            batch.valid,
            axis_name=axis_name,
            with_slots=migration == "copy",
            limit=placement.split_limit,
        )
    # What a new row starts from travels with its key: the bucket, or, from a
    # static table split by rows, the bucket's row (and slots) read from its owner.
    carries_rows = bucket_values is not None and migration != "none"
    start = (bucket_values, bucket_slots) if carries_rows else inputs.buckets
    fitted = state.share is not None
    if fitted:  # each entry's share of its bucket travels
        whole, view, _ = _migration.fitted_view(
            state, inputs, options.feature_salts, bucket_values
        )
        carries_rows, start = True, (view.static.values, None)
    sent = (keys.hi, keys.lo, repeats, start)
    hi, lo, repeats, start = jax.tree.map(
        lambda x: _exchange.to_owners(
            _exchange.packed(x, route.slot, size), here, axis_name
        ),
        sent,
    )

    def one_partition(dynamic, sketch, hi, lo, repeats, start):
        column, buckets = state, start
        if carries_rows:
            column, buckets = adaptive.bucket_view(state, *start)
        dynamic, sketch, found, values = adaptive.dynamic_read(
            column,
            dynamic,
            sketch,
            ids_lib.Ids(hi, lo),
            buckets,
            repeats > 0,
            options,
            by_policy=by_policy,
            weights=repeats,
        )
        flags = (
            jnp.where(found.trained, _TRAINED, 0)
            | jnp.where(found.read, _READ, 0)
            | jnp.where(found.refused, _REFUSED, 0)
            | jnp.where(found.new, _NEW, 0)
        ).astype(jnp.int8)
        rows = jnp.where(found.trained, found.rows, dynamic.capacity)
        return dynamic, sketch, values, flags, rows

    with jax.named_scope("aj.partitions"):
        dynamic, sketch, values, flags, rows = each_partition(one_partition)(
            state.dynamic, state.sketch, hi, lo, repeats, start
        )
    state = state.replace(dynamic=dynamic, sketch=sketch)
    values = _exchange.unpacked(_exchange.to_sources(values, axis_name), slot)
    flags = _exchange.unpacked(_exchange.to_sources(flags, axis_name), slot)
    found = adaptive.DynamicLookup(
        rows=slot,  # its place in the exchange; the row is on the owner
        trained=(flags & _TRAINED) != 0,
        read=(flags & _READ) != 0,
        refused=(flags & _REFUSED) != 0,
        new=(flags & _NEW) != 0,
    )
    embeddings, state, static_rows, scale = adaptive.serve(
        state,
        inputs,
        values,
        found,
        options,
        placement,
        exchange_overflows=overflow,
        bucket_values=bucket_values,
        split_overflows=split_overflows,
    )
    if fitted:
        state = _migration.record_fitted(
            state, inputs, options.feature_salts, values, whole, found, axis_name
        )
    residuals = adaptive.Residuals(
        static_rows,
        rows,
        batch.row_ids,
        scale,
        exchange_slots=jnp.where(found.trained, slot, size),
        examples=adaptive.examples_of(batch.batch_size),
    )
    return embeddings, state, residuals


def apply_gradients(
    state: adaptive.ColumnState,
    residuals: adaptive.Residuals,
    d_embeddings: jax.Array,
    options: adaptive.StepOptions,
    placement: adaptive.Placement = adaptive.ONE_DEVICE,
) -> adaptive.ColumnState:
    """`adaptive.apply_gradients` for a partitioned column: the gradients of the
    dynamic entries go to their partitions, those of the static ones to every
    replica of the static table (or, split by rows, to their buckets' owners).
    Jittable."""
    grads = combiners.entry_gradients(d_embeddings, residuals.segments, residuals.scale)
    state = adaptive.update_static(
        state, residuals.static_rows, grads, options.static_optimizer, placement
    )
    axis_name = placement.axis_name
    here, received = residuals.dynamic_rows.shape
    sent = _exchange.summed(grads, residuals.exchange_slots, here * received)
    update = functools.partial(
        adaptive.apply_dynamic, optimizer=options.dynamic_optimizer, step=state.step
    )
    with jax.named_scope("aj.partitions"):
        dynamic, skipped = each_partition(update)(
            state.dynamic,
            residuals.dynamic_rows,
            _exchange.to_owners(sent, here, axis_name),
        )
    stats = statistics.record_nonfinite(state.stats, jnp.sum(skipped), axis_name)
    step = _numerics.saturating_add(state.step, jnp.int32(1))
    return state.replace(dynamic=dynamic, stats=stats, step=step)


def evict(
    state: adaptive.ColumnState,
    policies: tuple,
    fresh_slots: Any,
    *,
    axis_name: str | None = None,
) -> adaptive.ColumnState:
    """`eviction.evict` on every partition; the statistics count them all."""
    if not policies:
        return state
    evict_rows = functools.partial(
        eviction_lib.evict_rows, policies=policies, fresh_slots=fresh_slots
    )
    dynamic, counts, age_sum = each_partition(evict_rows)(state.dynamic)

    def total(x: jax.Array) -> jax.Array:
        x = jnp.sum(x)
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    counts = {reason: total(count) for reason, count in counts.items()}
    stats = statistics.record_evictions(state.stats, counts, total(age_sum))
    return state.replace(dynamic=dynamic, stats=stats)


def partitions(dynamic: ev_lib.EmbeddingVariable) -> list[ev_lib.EmbeddingVariable]:
    """A partitioned embedding variable as one variable per partition."""
    count = dynamic.values.shape[0]
    return [jax.tree.map(lambda x, p=p: x[p], dynamic) for p in range(count)]


def joined(parts: list[Any]) -> Any:
    """The inverse of `partitions`."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
