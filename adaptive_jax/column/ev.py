"""The embedding variable: a dynamic table with value rows and optimizer slots.

DeepRec's EmbeddingVariable: keys come and go in the dynamic table (`table`), and
their values and optimizer slots sit in arrays aligned with its rows. A key that
gets a row starts from values and slots the caller gives (copied from a static
bucket, or drawn from default values), written over whatever the row held, so
that a row reused after eviction inherits nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.optim import set_rows


@struct.dataclass
class EmbeddingVariable:
    """State of an embedding variable.

    Attributes:
      table: the `DynamicTable` of keys to rows.
      values: `[capacity, dim]`, the value row of each key.
      slots: the optimizer's slots (e.g. `FtrlSlots`), each `[capacity, dim]`.
    """

    table: table_lib.DynamicTable
    values: jax.Array
    slots: Any

    @classmethod
    def create(
        cls, capacity: int, dim: int, optimizer: Any, dtype: jnp.dtype = jnp.float32
    ) -> EmbeddingVariable:
        """An empty variable of `capacity` rows of `dim`, slots for `optimizer`.

        Args:
          capacity: rows of the dynamic table.
          dim: embedding dimension.
          optimizer: an `optim.Ftrl` or `optim.Adagrad` spec.
          dtype: of the values and slots.
        """
        values = jnp.zeros((capacity, dim), dtype)
        return cls(
            table_lib.DynamicTable.create(capacity),
            values,
            optimizer.init_slots(values),
        )

    @property
    def capacity(self) -> int:
        return self.values.shape[0]

    @property
    def dim(self) -> int:
        return self.values.shape[1]


def lookup_or_insert(
    variable: EmbeddingVariable,
    keys: ids_lib.Ids,
    insert: jax.Array,
    *,
    valid: jax.Array,
    starting_rows: Callable[[jax.Array], tuple[jax.Array, Any]],
) -> tuple[EmbeddingVariable, jax.Array]:
    """Rows of the flat `keys`; keys inserted now start from `starting_rows`.

    Args:
      variable: the variable; donate it under jit.
      keys: `[n]` ids.
      insert: `[n] bool`, whether an absent key may get a row.
      valid: `[n] bool`; False entries touch nothing.
      starting_rows: given `[c] int32` indices of entries (in range),
        returns their starting `[c, dim]` values and slots (a slots tuple of
        `[c, dim]`), kept for the entries whose key was inserted now; repeats
        of a key must agree. Called in the insertion's loop, on its chunks of
        the entries that asked for a row, so that it costs nothing when no key
        is new.

    Returns:
      `(variable, rows)`, rows EMPTY (-1) where a key has no row.
    """
    found = table_lib.find(variable.table, keys)
    variable, rows, _ = insert_absent(
        variable, found, insert, valid=valid, starting_rows=starting_rows
    )
    return variable, rows


def insert_absent(
    variable: EmbeddingVariable,
    found: table_lib.Found,
    insert: jax.Array,
    *,
    valid: jax.Array,
    starting_rows: Callable[[jax.Array], tuple[jax.Array, Any]],
    weights: jax.Array | None = None,
) -> tuple[EmbeddingVariable, jax.Array, jax.Array]:
    """`lookup_or_insert` after `table.find`: for a caller that decides which
    absent keys to insert in between (an admission filter). `weights`: as
    `table.insert_absent`.

    Returns:
      `(variable, rows, new)`, flat; `new` True for entries inserted now.
    """
    capacity, n = variable.capacity, found.rows.shape[0]

    def start_rows(state, entries, rows):
        values, slots = state
        entry = jnp.minimum(entries, n - 1)
        at = jnp.where(rows >= 0, rows, capacity)
        new_values, new_slots = starting_rows(entry)
        values = values.at[at].set(new_values.astype(values.dtype), mode="drop")
        return values, set_rows(slots, at, new_slots)

    table, rows, new, (values, slots) = table_lib.insert_absent_with(
        variable.table,
        found,
        insert,
        valid=valid,
        weights=weights,
        carry=(variable.values, variable.slots),
        on_rows=start_rows,
    )
    return variable.replace(table=table, values=values, slots=slots), rows, new


def reset_rows(
    variable: EmbeddingVariable, dead: jax.Array, fresh_slots: Any
) -> EmbeddingVariable:
    """Takes back the live rows marked in `dead [capacity] bool`: their keys leave
    the table, their values go to 0 and their slots to `fresh_slots` (`[dim]`
    rows), in one pass (`table.release`)."""

    def reset(state, rows):
        values, slots = state
        values = values.at[rows].set(0, mode="drop")
        shape = (rows.shape[0], variable.dim)
        blank = type(slots)(*(jnp.broadcast_to(f, shape) for f in fresh_slots))
        return values, set_rows(slots, rows, blank)

    table, (values, slots) = table_lib.release(
        variable.table, dead, (variable.values, variable.slots), reset
    )
    return variable.replace(table=table, values=values, slots=slots)


def gather(variable: EmbeddingVariable, rows: jax.Array) -> jax.Array:
    """`[n, dim]` values of `rows`; zeros where a row is EMPTY."""
    return variable.values.at[jnp.where(rows >= 0, rows, variable.capacity)].get(
        mode="fill", fill_value=0
    )
