"""A column's sparse update: the gradients of the looked-up rows, summed per row,
to the sparse optimizer of each store.

The static table trains on the entries its buckets served (under `shard_map`,
those of every device, gathered, or, split by rows, its own buckets'); the
dynamic rows on theirs. O(ids x dim): no dense gradient of a table. A row whose
update is not finite is left as it was and counted in the statistics'
`nonfinite_rows` (`optim.sparse_update`): a table never holds a NaN or inf.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics
from adaptive_jax import table as table_lib
from adaptive_jax.column import _exchange, combiners, static_split, statistics
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.column._state import ColumnState, Residuals, StaticTable
from adaptive_jax.column._step import ONE_DEVICE, Placement, StepOptions
from adaptive_jax.optim import sparse_update, sparse_update_split


def apply_gradients(
    state: ColumnState,
    residuals: Residuals,
    d_embeddings: jax.Array,
    options: StepOptions,
    placement: Placement = ONE_DEVICE,
) -> ColumnState:
    """One sparse optimizer step on the rows that `lookup` served. Jittable.

    Args:
      state: the column's state, as `lookup` returned it; donate it under jit.
      residuals: `lookup`'s residuals.
      d_embeddings: `[batch_size, dim]`, the gradient of the embeddings.
      options: the column's optimizers (static: per-coordinate L1; dynamic).
      placement: one device, or under `shard_map` (a column without dynamic
        table on a mesh) the mesh axis: every device's buckets train every
        replica, or, split by rows, their owners (see `update_static`).

    Returns:
      The state, its `step` (and the dynamic table's) one further; rows whose
      update was not finite kept as they were, and counted.

    Note: XLA updates the tables in place when the gradient depends on the
    embeddings, as with any model. With a loss linear in the embeddings (whose
    gradient is a constant), nothing orders the lookup's read of the static table
    before this update's writes, and XLA copies the table to be safe.
    """
    grads = combiners.entry_gradients(d_embeddings, residuals.segments, residuals.scale)
    one_device = placement.axis_name is None and not placement.split_static
    if one_device and state.static is not None and state.dynamic is not None:
        state = _apply_both(state, residuals, grads, options)
        return state.replace(step=_numerics.saturating_add(state.step, jnp.int32(1)))
    state = update_static(
        state, residuals.static_rows, grads, options.static_optimizer, placement
    )
    if state.dynamic is not None:
        dynamic, skipped = apply_dynamic(
            state.dynamic,
            residuals.dynamic_rows,
            grads,
            options.dynamic_optimizer,
            state.step,
        )
        stats = statistics.record_nonfinite(state.stats, skipped)
        state = state.replace(dynamic=dynamic, stats=stats)
    return state.replace(step=_numerics.saturating_add(state.step, jnp.int32(1)))


def _apply_both(
    state: ColumnState, residuals: Residuals, grads: jax.Array, options: StepOptions
) -> ColumnState:
    """`apply_static` and `apply_dynamic` in one pass over the entries: each
    entry trains its bucket or its row (`optim.sparse_update_split`); rows
    whose update is not finite are kept and counted, as theirs."""
    static, dynamic = state.static, state.dynamic
    ((values, slots), (rows, row_slots)), skipped = sparse_update_split(
        (
            (
                options.static_optimizer,
                static.values,
                static.slots,
                residuals.static_rows,
            ),
            (
                options.dynamic_optimizer,
                dynamic.values,
                dynamic.slots,
                residuals.dynamic_rows,
            ),
        ),
        grads.astype(static.values.dtype),
        count=state.step,
    )
    last_step = static.last_step.at[residuals.static_rows].set(state.step, mode="drop")
    table = table_lib.advance_step(dynamic.table)
    return state.replace(
        static=StaticTable(values, slots, last_step),
        dynamic=dynamic.replace(table=table, values=rows, slots=row_slots),
        stats=statistics.record_nonfinite(state.stats, skipped),
    )


def update_static(
    state: ColumnState,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    placement: Placement = ONE_DEVICE,
) -> ColumnState:
    """The static table's sparse update from the entries it served; under
    `shard_map`, from the entries of every device (an all-gather), so that its
    replicas stay equal, or, split by rows, from those of its own buckets.

    `placement.static_limit`: the all-gather sends each device's first that
    many static entries, compacted, when every device has no more; else (a
    `lax.cond` on the whole mesh) all its entries. Never an entry lost."""
    if state.static is None:
        return state
    static, axis_name = state.static, placement.axis_name
    if placement.split_static:
        static, skipped = static_split.update(
            static,
            rows,
            grads,
            lambda table, local_rows, local_grads: apply_static(
                table, local_rows, local_grads, optimizer, state.step
            ),
            axis_name=axis_name,
            limit=placement.split_limit,
        )
        stats = statistics.record_nonfinite(state.stats, skipped, axis_name)
        return state.replace(static=static, stats=stats)
    if axis_name is not None:  # every replica applies every device's entries
        rows, grads = _gathered(
            rows, grads, static.values.shape[0], axis_name, placement.static_limit
        )
    static, skipped = apply_static(static, rows, grads, optimizer, state.step)
    stats = statistics.record_nonfinite(state.stats, skipped)
    return state.replace(static=static, stats=stats)


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


def _sparse_step(
    optimizer: Any,
    values: jax.Array,
    slots: Any,
    rows: jax.Array,
    grads: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, Any, jax.Array]:
    """The optimizer's sparse step on `rows` of a table's values and slots, and
    the rows it left as they were (their update not finite)."""
    grads = grads.astype(values.dtype)
    return sparse_update(optimizer, values, slots, rows, grads, count=step)


def apply_static(
    static: StaticTable,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    step: jax.Array,
) -> tuple[StaticTable, jax.Array]:
    """The sparse update of the buckets `rows` (num_buckets: none) by `grads`,
    and `[] int32` the buckets left as they were (their update not finite)."""
    values, slots, skipped = _sparse_step(
        optimizer, static.values, static.slots, rows, grads, step
    )
    last_step = static.last_step.at[rows].set(step, mode="drop")
    return StaticTable(values, slots, last_step), skipped


def apply_dynamic(
    dynamic: ev_lib.EmbeddingVariable,
    rows: jax.Array,
    grads: jax.Array,
    optimizer: Any,
    step: jax.Array,
) -> tuple[ev_lib.EmbeddingVariable, jax.Array]:
    """The sparse update of the dynamic `rows` (capacity: none) by `grads`; the
    table's step moves on. Also `[] int32`, the rows left as they were (their
    update not finite)."""
    values, slots, skipped = _sparse_step(
        optimizer, dynamic.values, dynamic.slots, rows, grads, step
    )
    table = table_lib.advance_step(dynamic.table)
    return dynamic.replace(table=table, values=values, slots=slots), skipped
