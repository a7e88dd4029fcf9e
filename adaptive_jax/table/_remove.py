"""Removal from the dynamic table: keys leave the index, rows the table.

`remove` takes keys out; `release` and `remove_rows` take back marked rows in
one pass over the capacity, in chunks, so that a caller (an embedding
variable's values and slots) resets its own row data in the same pass. Freed
rows go back on the free list, their counters to 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax.table import _chunks, _index
from adaptive_jax.table._table import EMPTY, DynamicTable, flat_inputs, live_rows

_RELEASE_CHUNKS = 32  # rows are taken back in chunks of 1/32 of the capacity


def remove(
    table: DynamicTable, keys: ids_lib.IdsLike, *, valid: jax.Array | None = None
) -> tuple[DynamicTable, jax.Array]:
    """Removes `keys`: their rows go back to the free list, their counters to 0.

    A removed key is never found again, until it is inserted anew. Absent keys and
    repeats are ignored. Freed rows go on the free list in the order of the keys'
    first occurrence, so the last one freed is the next handed out.

    Args:
      table: the table; donate it under jit.
      keys: int64 ids of any shape.
      valid: optional bool mask of the shape of `keys`; False entries are ignored.

    Returns:
      `(table, rows)`: the new table, and the row each key held, EMPTY (-1) where
      it was absent (or invalid).
    """
    ids, shape, (valid,) = flat_inputs(keys, valid=valid)
    with jax.named_scope("aj.table.remove"):
        found = _index.probe(
            table.slots, table.row_keys, ids, _index.candidates(ids, table.slots)
        )
        hit = valid & (found.row >= 0)
        slots, first = _index.erase(table.slots, found, hit)
        table = _free(table, jnp.where(first, found.row, table.capacity), first)
        return table.replace(slots=slots), jnp.where(hit, found.row, EMPTY).reshape(
            shape
        )


def release(
    table: DynamicTable,
    dead: jax.Array,
    carry: Any = None,
    on_rows: Callable[[Any, jax.Array], Any] | None = None,
) -> tuple[DynamicTable, Any]:
    """Takes back the live rows marked in `dead [capacity] bool`, in one pass.

    Their keys leave the index, their counters go to 0, and the rows go on the
    free list in row order. O(capacity) to list them, O(rows) to free them, in
    chunks; `on_rows(carry, rows)` runs on each chunk too (`[k] int32` rows,
    padded with `capacity`), so that a caller resets its own row data in the
    same pass.

    Args:
      table: the table; donate it under jit.
      dead: rows to take back, all live (see `remove_rows` otherwise).
      carry: the caller's state, for `on_rows`.
      on_rows: returns the new carry.

    Returns:
      `(table, carry)`.
    """
    capacity = table.capacity
    num_dead = jnp.sum(dead, dtype=jnp.int32)

    def free_chunk(state, rows, offset):
        slots, free_list, freq, last_step, carry = state
        held = rows < capacity
        at = jnp.where(held, rows, capacity)
        stored = table.row_keys.at[jnp.minimum(rows, capacity - 1)].get(
            mode="promise_in_bounds"
        )
        keys = ids_lib.Ids(stored[:, 0], stored[:, 1])
        found = _index.probe(
            slots, table.row_keys, keys, _index.candidates(keys, slots)
        )
        slots, _ = _index.erase(slots, found, held)
        position = table.num_free + offset + jnp.arange(rows.shape[0], dtype=jnp.int32)
        free_list = free_list.at[jnp.where(held, position, capacity)].set(
            rows, mode="drop"
        )
        freq = freq.at[at].set(0, mode="drop")
        last_step = last_step.at[at].set(0, mode="drop")
        if on_rows is not None:
            carry = on_rows(carry, at)
        return slots, free_list, freq, last_step, carry

    state = (table.slots, table.free_list, table.freq, table.last_step, carry)
    chunk = max(1, capacity // _RELEASE_CHUNKS)
    slots, free_list, freq, last_step, carry = _chunks.for_each_chunk(
        dead, chunk, free_chunk, state
    )
    table = table.replace(
        slots=slots,
        free_list=free_list,
        num_free=table.num_free + num_dead,
        freq=freq,
        last_step=last_step,
        removals=_numerics.saturating_add(table.removals, num_dead),
    )
    return table, carry


def _free(table: DynamicTable, rows: jax.Array, freed: jax.Array) -> DynamicTable:
    """Pushes `rows[freed]` (distinct, live) onto the free list, in order."""
    outside = table.capacity
    position = table.num_free + _numerics.exclusive_count(freed)
    free_list = table.free_list.at[jnp.where(freed, position, outside)].set(
        rows, mode="drop"
    )
    num_freed = jnp.sum(freed, dtype=jnp.int32)
    return table.replace(
        free_list=free_list,
        num_free=table.num_free + num_freed,
        freq=table.freq.at[rows].set(0, mode="drop"),
        last_step=table.last_step.at[rows].set(0, mode="drop"),
        removals=_numerics.saturating_add(table.removals, num_freed),
    )


def remove_rows(table: DynamicTable, row_mask: jax.Array) -> DynamicTable:
    """Removes the keys of the rows where `row_mask` is True; free rows are ignored.

    Costs O(capacity): meant for eviction every so many steps, not for every step.

    Args:
      table: the table; donate it under jit.
      row_mask: `[capacity] bool`.

    Raises:
      ValueError: `row_mask` is not of shape `[capacity]`.
    """
    row_mask = jnp.asarray(row_mask)
    if row_mask.shape != (table.capacity,):
        raise ValueError(
            f"row_mask has shape {row_mask.shape}, expected ({table.capacity},), one "
            "entry per row of the table"
        )
    with jax.named_scope("aj.table.remove_rows"):
        dead = _numerics.materialized(
            lambda t, m: m.astype(bool) & live_rows(t), table, row_mask
        )
        return release(table, dead)[0]
