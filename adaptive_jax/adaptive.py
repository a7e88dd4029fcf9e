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
- "copy": the bucket's own slots.
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

from adaptive_jax import _numerics, _sketch, combiners, statistics
from adaptive_jax import ev as ev_lib
from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax._host_ids import ColumnIds
from adaptive_jax.optim import apply_sparse

MIGRATIONS = ("deeprec", "warm", "copy")


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


def with_l1_mode(optimizer: Any, l1_mode: str) -> Any:
    """The optimizer with the given L1 mode, if it has one (FTRL does)."""
    if hasattr(optimizer, "l1_mode"):
        return dataclasses.replace(optimizer, l1_mode=l1_mode)
    return optimizer


def _starting_rows(
    state: ColumnState,
    inputs: ColumnIds,
    optimizer: Any,
    migration: str,
    entries: jax.Array,
) -> tuple[jax.Array, Any]:
    """Values and slots that the keys of `entries` start from in the dynamic table:
    their buckets' (migration), or DeepRec's default values without static table."""
    if state.static is None:
        keys = inputs.ids.values[entries]
        values = state.default_values[
            ids_lib.remainder(keys, state.default_values.shape[0])
        ]
        return values, optimizer.init_slots(values)
    buckets = inputs.buckets[entries]
    values = state.static.values[buckets]
    if migration == "warm":
        return values, optimizer.warm_slots(values, state.step)
    if migration == "copy":
        return values, type(state.static.slots)(
            *(s[buckets] for s in state.static.slots)
        )
    return values, optimizer.init_slots(values)


def _admit(
    state: ColumnState, keys: ids_lib.Ids, absent: jax.Array, admission: Any
) -> tuple[ColumnState, jax.Array, jax.Array]:
    """Counts the absent ids in the sketch: (state, admitted, count after)."""
    width = state.sketch.counts.shape[1]
    halve_at = admission.halve_at(width)
    sketch, after = _sketch.add(state.sketch, keys, absent, halve_at=halve_at)
    return state.replace(sketch=sketch), absent & admission.admits(after), after


def lookup(
    state: ColumnState,
    inputs: ColumnIds,
    *,
    combiner: str,
    dynamic_optimizer: Any,
    migration: str = "deeprec",
    admission: Any = None,
    no_permission_value: float = 0.0,
) -> tuple[jax.Array, ColumnState, Residuals]:
    """Embeddings of a batch: admit, insert (migrate), gather, combine. Jittable.

    Args:
      state: the column's state; donate it under jit.
      inputs: the batch's ids (`ColumnIds`).
      combiner: "sum", "mean" or "sqrtn".
      dynamic_optimizer: the optimizer spec of the dynamic rows (its slots).
      migration: "deeprec", "warm" or "copy".
      admission: the admission filter (`options.AdmissionFilter`), or None.
      no_permission_value: what a plain dynamic column gives an id without a
        row (not admitted yet, or no room).

    Returns:
      `(embeddings [batch_size, dim], state, residuals)`.
    """
    batch = inputs.ids
    valid = batch.valid
    nothing = jnp.zeros_like(valid)
    read_dynamic = trained_dynamic = refused = nothing
    dynamic_rows = static_rows = jnp.zeros(valid.shape, jnp.int32)
    if state.dynamic is not None:
        routed = valid
        if state.static is not None and inputs.to_dynamic is not None:
            routed = valid & inputs.to_dynamic  # an explicit mask wins
        found = table_lib.find(state.dynamic.table, batch.values)
        absent = routed & (found.rows < 0)
        insert, freq = absent, None
        by_policy = admission is not None and (
            state.static is None or inputs.to_dynamic is None
        )
        if by_policy:
            state, insert, freq = _admit(state, batch.values, absent, admission)
            refused = absent & ~insert
        starting = functools.partial(
            _starting_rows, state, inputs, dynamic_optimizer, migration
        )
        dynamic, rows, new = ev_lib.insert_absent(
            state.dynamic, found, insert, valid=routed, starting_rows=starting
        )
        if freq is not None:  # a promoted key's count includes its past
            table = table_lib.set_frequency(dynamic.table, rows, new, freq)
            dynamic = dynamic.replace(table=table)
        state = state.replace(dynamic=dynamic)
        trained_dynamic = routed & (rows >= 0)
        read_dynamic = trained_dynamic
        if state.static is None and by_policy:
            read_dynamic = trained_dynamic & ~new  # admitted now: not yet read
        dynamic_rows = jnp.where(trained_dynamic, rows, dynamic.capacity)
        values = ev_lib.gather(dynamic, jnp.where(read_dynamic, rows, dynamic.capacity))
        if state.static is None:
            values = jnp.where(read_dynamic[:, None], values, no_permission_value)
    read_static = nothing
    if state.static is not None:
        read_static = valid & ~trained_dynamic
        static_rows = jnp.where(
            read_static, inputs.buckets, state.static.values.shape[0]
        )
        # Only the ids served by their buckets read the static table; the others
        # read bucket 0, which stays in cache.
        static_values = state.static.values.at[
            jnp.where(read_static, inputs.buckets, 0)
        ].get(mode="promise_in_bounds")
        values = (
            static_values
            if state.dynamic is None
            else jnp.where(trained_dynamic[:, None], values, static_values)
        )
    served = (read_static, read_dynamic, valid & ~read_static & ~read_dynamic)
    stats = statistics.record_lookup(state.stats, served, refused, batch.values)
    state = state.replace(stats=stats)
    scale = combiners.scales(
        batch.row_ids, batch.weights, valid, batch.batch_size, combiner
    )
    embeddings = combiners.combine(values, batch.row_ids, scale, batch.batch_size)
    residuals = Residuals(static_rows, dynamic_rows, batch.row_ids, scale)
    return embeddings, state, residuals


def apply_gradients(
    state: ColumnState,
    residuals: Residuals,
    d_embeddings: jax.Array,
    *,
    static_optimizer: Any,
    dynamic_optimizer: Any,
) -> ColumnState:
    """One sparse optimizer step on the rows that `lookup` served. Jittable.

    Args:
      state: the column's state, as `lookup` returned it; donate it under jit.
      residuals: `lookup`'s residuals.
      d_embeddings: `[batch_size, dim]`, the gradient of the embeddings.
      static_optimizer: the spec for the static table (per-coordinate L1).
      dynamic_optimizer: the spec for the dynamic rows.

    Returns:
      The state, its `step` (and the dynamic table's) one further.

    Note: XLA updates the tables in place when the gradient depends on the
    embeddings, as with any model. With a loss linear in the embeddings (whose
    gradient is a constant), nothing orders the lookup's read of the static table
    before this update's writes, and XLA copies the table to be safe.
    """
    grads = combiners.entry_gradients(d_embeddings, residuals.segments, residuals.scale)
    if state.static is not None:
        values, slots = apply_sparse(
            static_optimizer,
            state.static.values,
            state.static.slots,
            residuals.static_rows,
            grads.astype(state.static.values.dtype),
            count=state.step,
        )
        last_step = state.static.last_step.at[residuals.static_rows].set(
            state.step, mode="drop"
        )
        state = state.replace(static=StaticTable(values, slots, last_step))
    if state.dynamic is not None:
        dynamic = state.dynamic
        values, slots = apply_sparse(
            dynamic_optimizer,
            dynamic.values,
            dynamic.slots,
            residuals.dynamic_rows,
            grads.astype(dynamic.values.dtype),
            count=state.step,
        )
        table = table_lib.advance_step(dynamic.table)
        state = state.replace(
            dynamic=dynamic.replace(table=table, values=values, slots=slots)
        )
    return state.replace(step=_numerics.saturating_add(state.step, jnp.int32(1)))
