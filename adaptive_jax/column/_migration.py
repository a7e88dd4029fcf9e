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
  key of a plain dynamic column does (the control of the seed's claim).
No gradient flows into the static table through the copy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import ids as ids_lib
from adaptive_jax.column._state import ColumnState, StaticTable

MIGRATIONS = ("deeprec", "warm", "copy", "none")


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


def bucket_view(
    state: ColumnState, values: jax.Array, slots: Any
) -> tuple[ColumnState, jax.Array]:
    """`(state, buckets)` in which entry i's bucket is row i of a stand-in
    static table of `values` and `slots` (read from a table split by rows):
    what new dynamic rows start from."""
    view = StaticTable(values, slots, None)
    return state.replace(static=view), jnp.arange(values.shape[0], dtype=jnp.int32)
