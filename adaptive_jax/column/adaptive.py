"""The state of a column and its step: static buckets, dynamic rows, migration.

DeepRec's Adaptive Embedding, as pure functions. A column holds a static table
(`[hash_bucket_size, dim]`, ids collide in it), a dynamic one (an embedding
variable: a row per key, up to a capacity), or both. Each id carries a routing
mask: 1 sends it to the dynamic table, 0 to its static bucket. `lookup` inserts
the dynamic-routed ids that have no row yet, each starting from its bucket's
current value (migration), gathers every id's row from its store and combines
them per example; `apply_gradients` feeds the gradients of the looked-up rows,
summed per row, to the sparse optimizer of each store. Work is O(ids x dim): no
dense gradient of a table, no pass over untouched rows.

Where DeepRec differs: its adaptive lookup ignores the combiner and works with
one id per example only; here any number of ids per example, weights, and
`sum`, `mean` or `sqrtn` work. A dynamic-routed id refused a row (the table is
full) is served, and trained, by its static bucket, and counted.

Migration (`_migration`): a promoted row starts from its bucket's value, its
optimizer slots fresh ("deeprec"), solved to keep the value ("warm"), or the
bucket's ("copy"); "none" starts it from the default values instead.

Admission: without a mask, a column with an admission filter routes an id to
the dynamic table once its count reaches the filter's `filter_freq`; the counts
of ids that have no row yet live in a fixed-size sketch in the state. An id is
promoted at the step in which its count, this step's occurrences included,
reaches the threshold, and from then on reads its row. In a plain dynamic
column (DeepRec's rule), an id that is not admitted reads
`default_value_no_permission` and its gradient is dropped; at the step of its
admission it still reads that value (its count before the step fell short), and
its gradient trains its new row.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import _migration, combiners, static_split, statistics
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.column._migration import MIGRATIONS as MIGRATIONS
from adaptive_jax.column._migration import bucket_view as bucket_view
from adaptive_jax.column._share import ShareEvidence as ShareEvidence
from adaptive_jax.column._state import ColumnState as ColumnState
from adaptive_jax.column._state import Residuals as Residuals
from adaptive_jax.column._state import StaticTable as StaticTable
from adaptive_jax.column._state import examples_of as examples_of
from adaptive_jax.column._state import with_l1_mode as with_l1_mode
from adaptive_jax.column._step import ONE_DEVICE as ONE_DEVICE
from adaptive_jax.column._step import Placement as Placement
from adaptive_jax.column._step import StepOptions as StepOptions
from adaptive_jax.column._update import apply_dynamic as apply_dynamic
from adaptive_jax.column._update import apply_gradients as apply_gradients
from adaptive_jax.column._update import apply_static as apply_static
from adaptive_jax.column._update import update_static as update_static
from adaptive_jax.ids._host_ids import ColumnIds as ColumnIds
from adaptive_jax.table import _sketch


class DynamicLookup(NamedTuple):
    """What the dynamic table did with each entry of a lookup."""

    rows: jax.Array  # [n] int32, the entry's row; EMPTY where it has none
    trained: jax.Array  # [n] bool, its gradient trains that row
    read: jax.Array  # [n] bool, it reads that row
    refused: jax.Array  # [n] bool, the admission filter kept it out
    new: jax.Array  # [n] bool, its key got its row in this lookup


def dynamic_lookup(
    dynamic: ev_lib.EmbeddingVariable,
    sketch: _sketch.Sketch | None,
    keys: ids_lib.Ids,
    buckets: jax.Array,
    routed: jax.Array,
    *,
    static: StaticTable | None,
    default_values: jax.Array | None,
    step: jax.Array,
    optimizer: Any,
    migration: str,
    admission: Any,
    weights: jax.Array | None = None,
    inserts: bool = True,
) -> tuple[ev_lib.EmbeddingVariable, _sketch.Sketch | None, DynamicLookup]:
    """The dynamic table's part of a lookup: admit, insert (migrate), find rows.

    Args:
      dynamic: the embedding variable.
      sketch: the admission counts, with `admission`.
      keys, buckets: `[n]`, the entries' keys and static buckets.
      routed: `[n] bool`, the entries that go to the dynamic table.
      static, default_values: where new rows start from (`_migration`).
      step: the column's step (for "warm" migration).
      optimizer: the dynamic rows' optimizer spec (their slots).
      migration: "deeprec", "warm", "copy" or "none".
      admission: the admission filter that routes, or None.
      weights: `[n] int32`, the occurrences each entry stands for in the
        counts (1 if None): an entry for the repeats of its key on a device,
        merged before the exchange.
      inserts: False finds rows only (an evaluation): no admission, no
        insertion, nothing counted.

    Returns:
      `(dynamic, sketch, DynamicLookup)`.
    """
    found = table_lib.find(dynamic.table, keys)
    if not inserts:
        trained = routed & (found.rows >= 0)
        nothing = jnp.zeros_like(routed)
        rows = jnp.where(trained, found.rows, table_lib.EMPTY)
        return dynamic, sketch, DynamicLookup(rows, trained, trained, nothing, nothing)
    absent = routed & (found.rows < 0)
    insert, freq, refused = absent, None, jnp.zeros_like(routed)
    if admission is not None:
        width = sketch.counts.shape[1]
        sketch, after = _sketch.add(
            sketch, keys, absent, halve_at=admission.halve_at(width), weights=weights
        )
        insert = absent & admission.admits(after)
        freq, refused = after, absent & ~insert
    starting = functools.partial(
        _migration.starting_rows,
        static,
        default_values,
        keys,
        buckets,
        step,
        optimizer,
        migration,
    )
    dynamic, rows, new = ev_lib.insert_absent(
        dynamic, found, insert, valid=routed, starting_rows=starting, weights=weights
    )
    if freq is not None:  # a promoted key's count includes its past
        table = table_lib.set_frequency(dynamic.table, rows, new, freq)
        dynamic = dynamic.replace(table=table)
    trained = routed & (rows >= 0)
    read = trained
    if static is None and admission is not None:
        read = trained & ~new  # admitted now: not yet read
    return dynamic, sketch, DynamicLookup(rows, trained, read, refused, new)


def dynamic_read(
    state: ColumnState,
    dynamic: ev_lib.EmbeddingVariable,
    sketch: _sketch.Sketch | None,
    keys: ids_lib.Ids,
    buckets: jax.Array,
    routed: jax.Array,
    options: StepOptions,
    *,
    by_policy: bool,
    weights: jax.Array | None = None,
) -> tuple[ev_lib.EmbeddingVariable, _sketch.Sketch | None, DynamicLookup, jax.Array]:
    """`dynamic_lookup` with the column's static table, default values, step and
    options (its admission filter where `by_policy`), and the values its
    entries read (`[n, dim]`, zeros where they read none)."""
    dynamic, sketch, found = dynamic_lookup(
        dynamic,
        sketch,
        keys,
        buckets,
        routed,
        static=state.static,
        default_values=state.default_values,
        step=state.step,
        optimizer=options.dynamic_optimizer,
        migration=options.migration,
        admission=options.admission if by_policy else None,
        weights=weights,
        inserts=options.inserts,
    )
    values = ev_lib.gather(dynamic, jnp.where(found.read, found.rows, dynamic.capacity))
    return dynamic, sketch, found, values


def routing(
    state: ColumnState, inputs: ColumnIds, admission: Any
) -> tuple[jax.Array, bool]:
    """`(routed, by_policy)`: the entries that go to the dynamic table, and
    whether the admission filter decides which of them get a row."""
    routed = inputs.ids.valid
    if state.static is not None and inputs.to_dynamic is not None:
        routed = routed & inputs.to_dynamic  # an explicit mask wins
    by_policy = admission is not None and (
        state.static is None or inputs.to_dynamic is None
    )
    return routed, by_policy


def serve(
    state: ColumnState,
    inputs: ColumnIds,
    dynamic_values: jax.Array | None,
    dynamic: DynamicLookup | None,
    options: StepOptions,
    placement: Placement = ONE_DEVICE,
    *,
    exchange_overflows: jax.Array | None = None,
    bucket_values: jax.Array | None = None,
    split_overflows: jax.Array | None = None,
) -> tuple[jax.Array, ColumnState, jax.Array, jax.Array]:
    """Each entry's value from its store, the statistics, the combination per
    example: `(embeddings, state, static_rows, scale)`.

    `dynamic_values` and `dynamic` come from the dynamic table (None without
    one); the other entries read their static bucket, or in a plain dynamic
    column `options.no_permission_value`. Under `shard_map`, the statistics
    are summed over the devices of `placement.axis_name`. `bucket_values`
    (`[n, dim]`): the entries' buckets, read from a static table split by rows
    over the axis (`static_split.read`); None reads them from the whole
    table, here.
    """
    axis_name = placement.axis_name
    batch = inputs.ids
    valid = batch.valid
    nothing = jnp.zeros_like(valid)
    trained = read_dynamic = refused = nothing
    values = None
    if dynamic is not None:
        trained, read_dynamic, refused = dynamic.trained, dynamic.read, dynamic.refused
        values = dynamic_values
        if state.static is None:
            values = jnp.where(
                read_dynamic[:, None], values, options.no_permission_value
            )
    read_static = nothing
    static_rows = jnp.zeros(valid.shape, jnp.int32)
    if state.static is not None:
        read_static = valid & ~trained
        split = bucket_values is not None
        none = static_split.num_buckets(state.static, axis_name if split else None)
        static_rows = jnp.where(read_static, inputs.buckets, none)
        static_values = bucket_values
        if not split:
            # Only the ids served by their buckets read the static table; the
            # others read bucket 0, which stays in cache.
            static_values = state.static.values.at[
                jnp.where(read_static, inputs.buckets, 0)
            ].get(mode="promise_in_bounds")
        values = (
            static_values
            if values is None
            else jnp.where(trained[:, None], values, static_values)
        )
    served = (read_static, read_dynamic, valid & ~read_static & ~read_dynamic)
    stats = statistics.record_lookup(
        state.stats,
        served,
        refused,
        batch.values,
        axis_name=axis_name,
        exchange_overflows=exchange_overflows,
        split_overflows=split_overflows,
    )
    scale = combiners.scales(
        batch.row_ids, batch.weights, valid, batch.batch_size, options.combiner
    )
    embeddings = combiners.combine(values, batch.row_ids, scale, batch.batch_size)
    return embeddings, state.replace(stats=stats), static_rows, scale


def lookup(
    state: ColumnState,
    inputs: ColumnIds,
    options: StepOptions,
    placement: Placement = ONE_DEVICE,
) -> tuple[jax.Array, ColumnState, Residuals]:
    """Embeddings of a batch: admit, insert (migrate), gather, combine. Jittable.

    Args:
      state: the column's state; donate it under jit.
      inputs: the batch's ids (`ColumnIds`).
      options: the column's combiner, optimizers, migration, admission.
      placement: one device, or under `shard_map` (a column without dynamic
        table on a mesh) the mesh axis, to sum the statistics over the
        devices, and whether the static table is split by rows over it.

    Returns:
      `(embeddings [batch_size, dim], state, residuals)`.
    """
    dynamic_values = found = bucket_values = split_overflows = None
    dynamic_rows = jnp.zeros(inputs.ids.valid.shape, jnp.int32)
    starts, buckets = state, inputs.buckets
    if placement.split_static and state.static is not None:
        copy = state.dynamic is not None and options.migration == "copy"
        bucket_values, bucket_slots, split_overflows = static_split.read(
            state.static,
            inputs.buckets,
            inputs.ids.valid,
            axis_name=placement.axis_name,
            with_slots=copy,
            limit=placement.split_limit,
        )
        starts, buckets = bucket_view(state, bucket_values, bucket_slots)
    # An eval inserts nothing: no promoted row to start, no evidence to record.
    fitted = state.share is not None and state.dynamic is not None and options.inserts
    if fitted:
        whole, starts, buckets = _migration.fitted_view(
            state, inputs, options.feature_salts, bucket_values
        )
    if state.dynamic is not None:
        routed, by_policy = routing(state, inputs, options.admission)
        dynamic, sketch, found, dynamic_values = dynamic_read(
            starts,
            state.dynamic,
            state.sketch,
            inputs.ids.values,
            buckets,
            routed,
            options,
            by_policy=by_policy,
        )
        state = state.replace(dynamic=dynamic, sketch=sketch)
        dynamic_rows = jnp.where(found.trained, found.rows, dynamic.capacity)
    embeddings, state, static_rows, scale = serve(
        state,
        inputs,
        dynamic_values,
        found,
        options,
        placement,
        bucket_values=bucket_values,
        split_overflows=split_overflows,
    )
    if fitted:
        state = _migration.record_fitted(
            state,
            inputs,
            options.feature_salts,
            dynamic_values,
            whole,
            found,
            placement.axis_name,
        )
    residuals = Residuals(
        static_rows,
        dynamic_rows,
        inputs.ids.row_ids,
        scale,
        examples=examples_of(inputs.ids.batch_size),
    )
    return embeddings, state, residuals
