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

Migration: the optimizer slots of a promoted row are
- "deeprec": fresh (accumulator at its initial value, linear 0), as DeepRec and
  TensorFlow treat any initial value; FTRL's next update rebuilds the weight
  from its slots, so part of the copied value is lost;
- "warm": a fresh accumulator and the `linear` for which FTRL's closed form
  gives back the copied value;
- "copy": the bucket's own slots;
- "none": no migration: the row starts from the column's default values
  (`InitializerOption`, row `id % default_value_dim`), with fresh slots, as a
  key of a plain dynamic table does (the control of the seed's claim).
No gradient flows into the static table through the copy.

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

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from adaptive_jax import (
    _exchange,
    _numerics,
    _sketch,
    combiners,
    static_split,
    statistics,
)
from adaptive_jax import ev as ev_lib
from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax._host_ids import ColumnIds
from adaptive_jax.optim import apply_sparse

MIGRATIONS = ("deeprec", "warm", "copy", "none")


@struct.dataclass
class StaticTable:
    """A hash-bucket table and its optimizer slots, `[num_buckets, dim]` each,
    and the step each bucket was last trained (`[num_buckets] int32`, -1 for
    never): what a delta export sends."""

    values: jax.Array
    slots: Any
    last_step: jax.Array

    @classmethod
    def create(cls, values: jax.Array, optimizer: Any) -> StaticTable:
        never = jnp.full((values.shape[0],), -1, jnp.int32)
        return cls(values, optimizer.init_slots(values), never)


@struct.dataclass
class ColumnState:
    """All the state of one embedding column.

    Attributes:
      static: the `StaticTable`, or None for a plain dynamic column.
      dynamic: the `ev.EmbeddingVariable`, or None for a plain static column.
      default_values: `[default_value_dim, dim]` starting values of new keys of
        a plain dynamic column (DeepRec's default-value matrix), or None.
      sketch: the counts of ids without a row, with an admission filter; else
        None.
      stats: the column's `statistics.ColumnStats`.
      step: `[] int32`, training steps taken; the learning-rate schedules' count.
    """

    static: StaticTable | None
    dynamic: ev_lib.EmbeddingVariable | None
    default_values: jax.Array | None
    sketch: _sketch.Sketch | None
    stats: statistics.ColumnStats
    step: jax.Array


class Residuals(NamedTuple):
    """What `lookup` hands to `apply_gradients`: which row served each id."""

    static_rows: jax.Array  # [n] int32, bucket; num_buckets where not static
    dynamic_rows: jax.Array  # [n] int32, row; capacity where not dynamic
    segments: jax.Array  # [n] int32, the example of each id
    scale: jax.Array  # [n] float32, the id's factor in its example's embedding
    # A partitioned column's: dynamic_rows are [partitions here, entries received]
    # on the owner, and each entry's slot in the exchange (none: P * limit).
    exchange_slots: jax.Array | None = None


def with_l1_mode(optimizer: Any, l1_mode: str) -> Any:
    """The optimizer with the given L1 mode, if it has one (FTRL does)."""
    if hasattr(optimizer, "l1_mode"):
        return dataclasses.replace(optimizer, l1_mode=l1_mode)
    return optimizer


def _starting_rows(
    static: StaticTable | None,
    default_values: jax.Array | None,
    keys: ids_lib.Ids,
    buckets: jax.Array,
    step: jax.Array,
    optimizer: Any,
    migration: str,
    entries: jax.Array,
) -> tuple[jax.Array, Any]:
    """Values and slots that the keys of `entries` start from in the dynamic table:
    their buckets' (migration), or DeepRec's default values without static table
    or with migration "none"."""
    if static is None or migration == "none":
        values = default_values[
            ids_lib.remainder(keys[entries], default_values.shape[0])
        ]
        return values, optimizer.init_slots(values)
    at = buckets[entries]
    values = static.values[at]
    if migration == "warm":
        return values, optimizer.warm_slots(values, step)
    if migration == "copy":
        return values, type(static.slots)(*(s[at] for s in static.slots))
    return values, optimizer.init_slots(values)


class DynamicLookup(NamedTuple):
    """What the dynamic table did with each entry of a lookup."""

    rows: jax.Array  # [n] int32, the entry's row; EMPTY where it has none
    trained: jax.Array  # [n] bool, its gradient trains that row
    read: jax.Array  # [n] bool, it reads that row
    refused: jax.Array  # [n] bool, the admission filter kept it out


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
) -> tuple[ev_lib.EmbeddingVariable, _sketch.Sketch | None, DynamicLookup]:
    """The dynamic table's part of a lookup: admit, insert (migrate), find rows.

    Args:
      dynamic: the embedding variable.
      sketch: the admission counts, with `admission`.
      keys, buckets: `[n]`, the entries' keys and static buckets.
      routed: `[n] bool`, the entries that go to the dynamic table.
      static, default_values: where new rows start from (see `_starting_rows`).
      step: the column's step (for "warm" migration).
      optimizer: the dynamic rows' optimizer spec (their slots).
      migration: "deeprec", "warm", "copy" or "none".
      admission: the admission filter that routes, or None.
      weights: `[n] int32`, the occurrences each entry stands for in the
        counts (1 if None): an entry for the repeats of its key on a device,
        merged before the exchange.

    Returns:
      `(dynamic, sketch, DynamicLookup)`.
    """
    found = table_lib.find(dynamic.table, keys)
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
        _starting_rows,
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
    return dynamic, sketch, DynamicLookup(rows, trained, read, refused)


def dynamic_read(
    state: ColumnState,
    dynamic: ev_lib.EmbeddingVariable,
    sketch: _sketch.Sketch | None,
    keys: ids_lib.Ids,
    buckets: jax.Array,
    routed: jax.Array,
    *,
    optimizer: Any,
    migration: str,
    admission: Any,
    weights: jax.Array | None = None,
) -> tuple[ev_lib.EmbeddingVariable, _sketch.Sketch | None, DynamicLookup, jax.Array]:
    """`dynamic_lookup` with the column's static table, default values and step,
    and the values its entries read (`[n, dim]`, zeros where they read none)."""
    dynamic, sketch, found = dynamic_lookup(
        dynamic,
        sketch,
        keys,
        buckets,
        routed,
        static=state.static,
        default_values=state.default_values,
        step=state.step,
        optimizer=optimizer,
        migration=migration,
        admission=admission,
        weights=weights,
    )
    values = ev_lib.gather(dynamic, jnp.where(found.read, found.rows, dynamic.capacity))
    return dynamic, sketch, found, values


def bucket_view(
    state: ColumnState, values: jax.Array, slots: Any
) -> tuple[ColumnState, jax.Array]:
    """`(state, buckets)` in which entry i's bucket is row i of a stand-in
    static table of `values` and `slots` (read from a table split by rows):
    what new dynamic rows start from."""
    view = StaticTable(values, slots, None)
    return state.replace(static=view), jnp.arange(values.shape[0], dtype=jnp.int32)


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
    *,
    combiner: str,
    no_permission_value: float,
    axis_name: str | None = None,
    exchange_overflows: jax.Array | None = None,
    bucket_values: jax.Array | None = None,
) -> tuple[jax.Array, ColumnState, jax.Array, jax.Array]:
    """Each entry's value from its store, the statistics, the combination per
    example: `(embeddings, state, static_rows, scale)`.

    `dynamic_values` and `dynamic` come from the dynamic table (None without
    one); the other entries read their static bucket, or in a plain dynamic
    column `no_permission_value`. Under `shard_map`, `axis_name` sums the
    statistics over the devices. `bucket_values` (`[n, dim]`): the entries'
    buckets, read from a static table split by rows over `axis_name`
    (`static_split.read`); None reads them from the whole table, here.
    """
    batch = inputs.ids
    valid = batch.valid
    nothing = jnp.zeros_like(valid)
    trained = read_dynamic = refused = nothing
    values = None
    if dynamic is not None:
        trained, read_dynamic, refused = dynamic.trained, dynamic.read, dynamic.refused
        values = dynamic_values
        if state.static is None:
            values = jnp.where(read_dynamic[:, None], values, no_permission_value)
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
    )
    scale = combiners.scales(
        batch.row_ids, batch.weights, valid, batch.batch_size, combiner
    )
    embeddings = combiners.combine(values, batch.row_ids, scale, batch.batch_size)
    return embeddings, state.replace(stats=stats), static_rows, scale


def lookup(
    state: ColumnState,
    inputs: ColumnIds,
    *,
    combiner: str,
    dynamic_optimizer: Any,
    migration: str = "deeprec",
    admission: Any = None,
    no_permission_value: float = 0.0,
    axis_name: str | None = None,
    split_static: bool = False,
) -> tuple[jax.Array, ColumnState, Residuals]:
    """Embeddings of a batch: admit, insert (migrate), gather, combine. Jittable.

    Args:
      state: the column's state; donate it under jit.
      inputs: the batch's ids (`ColumnIds`).
      combiner: "sum", "mean" or "sqrtn".
      dynamic_optimizer: the optimizer spec of the dynamic rows (its slots).
      migration: "deeprec", "warm", "copy" or "none".
      admission: the admission filter (`options.AdmissionFilter`), or None.
      no_permission_value: what a plain dynamic column gives an id without a
        row (not admitted yet, or no room).
      axis_name: under `shard_map` (a column without dynamic table on a mesh),
        the mesh axis, to sum the statistics over the devices.
      split_static: the static table is split by rows over `axis_name`.

    Returns:
      `(embeddings [batch_size, dim], state, residuals)`.
    """
    dynamic_values = found = bucket_values = None
    dynamic_rows = jnp.zeros(inputs.ids.valid.shape, jnp.int32)
    starts, buckets = state, inputs.buckets
    if split_static and state.static is not None:
        copy = state.dynamic is not None and migration == "copy"
        bucket_values, bucket_slots = static_split.read(
            state.static,
            inputs.buckets,
            inputs.ids.valid,
            axis_name=axis_name,
            with_slots=copy,
        )
        starts, buckets = bucket_view(state, bucket_values, bucket_slots)
    if state.dynamic is not None:
        routed, by_policy = routing(state, inputs, admission)
        dynamic, sketch, found, dynamic_values = dynamic_read(
            starts,
            state.dynamic,
            state.sketch,
            inputs.ids.values,
            buckets,
            routed,
            optimizer=dynamic_optimizer,
            migration=migration,
            admission=admission if by_policy else None,
        )
        state = state.replace(dynamic=dynamic, sketch=sketch)
        dynamic_rows = jnp.where(found.trained, found.rows, dynamic.capacity)
    embeddings, state, static_rows, scale = serve(
        state,
        inputs,
        dynamic_values,
        found,
        combiner=combiner,
        no_permission_value=no_permission_value,
        axis_name=axis_name,
        bucket_values=bucket_values,
    )
    residuals = Residuals(static_rows, dynamic_rows, inputs.ids.row_ids, scale)
    return embeddings, state, residuals


def apply_gradients(
    state: ColumnState,
    residuals: Residuals,
    d_embeddings: jax.Array,
    *,
    static_optimizer: Any,
    dynamic_optimizer: Any,
    axis_name: str | None = None,
    split_static: bool = False,
    static_limit: int | None = None,
) -> ColumnState:
    """One sparse optimizer step on the rows that `lookup` served. Jittable.

    Args:
      state: the column's state, as `lookup` returned it; donate it under jit.
      residuals: `lookup`'s residuals.
      d_embeddings: `[batch_size, dim]`, the gradient of the embeddings.
      static_optimizer: the spec for the static table (per-coordinate L1).
      dynamic_optimizer: the spec for the dynamic rows.
      axis_name: under `shard_map` (a column without dynamic table on a mesh),
        the mesh axis: every device's buckets train every replica.
      split_static: the static table is split by rows over `axis_name`: the
        buckets' gradients go to their owners.
      static_limit: a replicated static table's update gathers this many
        entries per device when they fit (see `update_static`).

    Returns:
      The state, its `step` (and the dynamic table's) one further.

    Note: XLA updates the tables in place when the gradient depends on the
    embeddings, as with any model. With a loss linear in the embeddings (whose
    gradient is a constant), nothing orders the lookup's read of the static table
    before this update's writes, and XLA copies the table to be safe.
    """
    grads = combiners.entry_gradients(d_embeddings, residuals.segments, residuals.scale)
    state = update_static(
        state,
        residuals.static_rows,
        grads,
        static_optimizer,
        axis_name,
        split_static,
        static_limit,
    )
    if state.dynamic is not None:
        dynamic = apply_dynamic(
            state.dynamic, residuals.dynamic_rows, grads, dynamic_optimizer, state.step
        )
        state = state.replace(dynamic=dynamic)
    return state.replace(step=_numerics.saturating_add(state.step, jnp.int32(1)))


def update_static(
    state: ColumnState,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    axis_name: str | None,
    split: bool = False,
    limit: int | None = None,
) -> ColumnState:
    """The static table's sparse update from the entries it served; under
    `shard_map`, from the entries of every device (an all-gather), so that its
    replicas stay equal, or, `split` by rows, from those of its own buckets.

    `limit`: the all-gather sends each device's first `limit` static entries,
    compacted, when every device has no more; else (a `lax.cond` on the whole
    mesh) all its entries. Never an entry lost."""
    if state.static is None:
        return state
    static = state.static
    if split:
        local = static.values.shape[0]
        rows, grads = static_split.routed_gradients(rows, grads, local, axis_name)
    elif axis_name is not None:
        rows, grads = _gathered(rows, grads, static.values.shape[0], axis_name, limit)
    static = apply_static(static, rows, grads, optimizer, state.step)
    return state.replace(static=static)


def _gathered(
    rows: jax.Array, grads: jax.Array, none: int, axis_name: str, limit: int | None
) -> tuple[jax.Array, jax.Array]:
    """Every device's static entries (`rows` < `none`): all of them, or, when
    no device has more than `limit`, each device's compacted into `limit`
    slots and padded back (the table stays out of the `lax.cond`, which would
    copy it)."""
    n = rows.shape[0]

    def whole():
        return (
            jax.lax.all_gather(rows, axis_name, tiled=True),
            jax.lax.all_gather(grads, axis_name, tiled=True),
        )

    if limit is None or limit >= n:
        return whole()
    devices = jax.lax.axis_size(axis_name)
    served = rows < none
    slot = jnp.where(served, _numerics.exclusive_count(served), limit)
    over = jnp.sum(served, dtype=jnp.int32) > limit
    fits = jax.lax.psum(over.astype(jnp.int32), axis_name) == 0

    def compact():
        few = _exchange.packed(rows, slot, limit, fill=none)
        few = jax.lax.all_gather(few, axis_name, tiled=True)
        some = jax.lax.all_gather(
            _exchange.packed(grads, slot, limit), axis_name, tiled=True
        )
        pad = devices * (n - limit)
        return (
            jnp.concatenate([few, jnp.full((pad,), none, rows.dtype)]),
            jnp.concatenate([some, jnp.zeros((pad,) + grads.shape[1:], grads.dtype)]),
        )

    return jax.lax.cond(fits, compact, whole)


def apply_static(
    static: StaticTable,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    step: jax.Array,
) -> StaticTable:
    """The sparse update of the buckets `rows` (num_buckets: none) by `grads`."""
    values, slots = apply_sparse(
        optimizer,
        static.values,
        static.slots,
        rows,
        grads.astype(static.values.dtype),
        count=step,
    )
    last_step = static.last_step.at[rows].set(step, mode="drop")
    return StaticTable(values, slots, last_step)


def apply_dynamic(
    dynamic: ev_lib.EmbeddingVariable,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    step: jax.Array,
) -> ev_lib.EmbeddingVariable:
    """The sparse update of the dynamic `rows` (capacity: none) by `grads`; the
    table's step moves on."""
    values, slots = apply_sparse(
        optimizer,
        dynamic.values,
        dynamic.slots,
        rows,
        grads.astype(dynamic.values.dtype),
        count=step,
    )
    table = table_lib.advance_step(dynamic.table)
    return dynamic.replace(table=table, values=values, slots=slots)
