"""Migration: what an id entering the dynamic table starts from.

Its row is copied from its static bucket; its optimizer slots are
- "deeprec": fresh (accumulator at its initial value, linear 0), as DeepRec and
  TensorFlow treat any initial value; FTRL's next update rebuilds the weight
  from its slots, so part of the copied value is lost;
- "warm": a fresh accumulator and the `linear` for which FTRL's closed form
  gives back the copied value;
- "copy": the bucket's own slots;
- "none": no migration: the row starts from the column's default values
  (`InitializerOption`, row `id % default_value_dim`), with fresh slots, as a
  key of a plain dynamic column does (the control of the seed's claim);
- "fitted" (the default): the default values plus the share of its bucket
  that promoted rows are measured to hold (`_share`), with slots that keep
  that share; a row of the control group starts as under "none".
No gradient flows into the static table through the copy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import ids as ids_lib
from adaptive_jax.column import _share
from adaptive_jax.column._state import ColumnState, StaticTable
from adaptive_jax.ids._host_ids import ColumnIds

MIGRATIONS = ("fitted", "deeprec", "warm", "copy", "none")


def starting_rows(
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
    or with migration "none". For "fitted", `static` is a view whose row of
    each entry is its share of its bucket (`_share.starting_part`)."""
    if static is None or migration in ("none", "fitted"):
        values = default_values[
            ids_lib.remainder(keys[entries], default_values.shape[0])
        ]
        if static is None or migration == "none":
            return values, optimizer.init_slots(values)
        part = static.values[buckets[entries]]
        slots = (
            optimizer.warm_slots(part, step)
            if hasattr(optimizer, "warm_slots")
            else optimizer.init_slots(part)
        )
        return values + part, slots
    at = buckets[entries]
    values = static.values[at]
    if migration == "warm":
        return values, optimizer.warm_slots(values, step)
    if migration == "copy":
        return values, type(static.slots)(*(s[at] for s in static.slots))
    return values, optimizer.init_slots(values)


def bucket_view(
    state: ColumnState, values: jax.Array, slots: Any
) -> tuple[ColumnState, jax.Array]:
    """`(state, buckets)` in which entry i's bucket is row i of a stand-in
    static table of `values` and `slots` (read from a table split by rows):
    what new dynamic rows start from."""
    view = StaticTable(values, slots, None)
    return state.replace(static=view), jnp.arange(values.shape[0], dtype=jnp.int32)


def fitted_view(
    state: ColumnState,
    inputs: ColumnIds,
    feature_salts: tuple[int, ...],
    bucket_values: jax.Array | None = None,
) -> tuple[jax.Array, ColumnState, jax.Array]:
    """For migration "fitted": `(whole, state, buckets)`, every entry's bucket
    value (`bucket_values` where a table split by rows gave them) and the view
    in which entry i's bucket is its share of it (`_share.starting_part`)."""
    whole = bucket_values
    if whole is None:
        at = jnp.where(inputs.ids.valid, inputs.buckets, 0)
        whole = state.static.values.at[at].get(mode="promise_in_bounds")
    part = _share.starting_part(
        state.share, whole, inputs.ids.values, inputs.ids.row_ids, feature_salts
    )
    view, buckets = bucket_view(state, part, None)
    return whole, view, buckets


def record_fitted(
    state: ColumnState,
    inputs: ColumnIds,
    feature_salts: tuple[int, ...],
    row_values: jax.Array,
    bucket_values: jax.Array,
    found: Any,
    axis_name: str | None,
) -> ColumnState:
    """The state with the control rows this lookup read (`found`, a
    `DynamicLookup`) added to the evidence of migration "fitted"."""
    share = _share.record(
        state.share,
        row_values,
        bucket_values,
        found.read,
        found.new,
        inputs.ids.values,
        inputs.ids.row_ids,
        feature_salts,
        axis_name,
    )
    return state.replace(share=share)
