"""The dynamic table's state and lookup: a fixed-capacity map from int64 keys to
rows, inside `jax.jit` (insertion: `_insert`; removal: `_remove`).

Keys come and go at O(batch) cost per call: a set-associative index (`_index`)
finds a key's row with a fixed number of memory reads; a free list hands out and
takes back rows. The table knows nothing of embeddings: the embedding variable
keeps its value and optimizer rows aligned with these rows.

Every function is pure and jittable; none mutates its input. Jit the updating ones
with `donate_argnums=0`, so that XLA updates the table in place instead of copying
it on every call:

>>> import jax
>>> from adaptive_jax import ids, table
>>> insert = jax.jit(table.lookup_or_insert, donate_argnums=0)
>>> t = table.DynamicTable.create(capacity=4)
>>> t, rows = insert(t, ids.from_numpy([7, -3, 7]), jax.numpy.ones(3, bool))
>>> rows.tolist()
[0, 1, 0]
>>> table.lookup(t, ids.from_numpy([-3, 5])).tolist()
[1, -1]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax.table import _index

EMPTY = _index.EMPTY
MAX_CAPACITY = 2**28


@struct.dataclass
class DynamicTable:
    """State of a dynamic table. Arrays only; the capacity is `row_keys.shape[0]`.

    Attributes:
      row_keys: `[capacity, 2] uint32`, the key (hi, lo words) held by each row;
        meaningless for free rows.
      slots: `[num_buckets, 2 * WAYS] int32`, the index from key to row (see
        `_index`).
      free_list: `[capacity] int32`, a stack: the free rows are
        `free_list[:num_free]`, and the next one handed out is
        `free_list[num_free - 1]`.
      num_free: `[] int32`, how many rows are free.
      freq: `[capacity] int32`, occurrences of the row's key in lookups and
        inserts since it got the row; saturates at 2**31 - 1. 0 for free rows.
      last_step: `[capacity] int32`, the `step` of the last lookup or insert of
        the row's key. 0 for free rows.
      step: `[] int32`, the global step, moved on by `advance_step`.
      inserts: `[] int32`, keys given a row, since creation (saturating).
      removals: `[] int32`, rows taken back, since creation (saturating).
      overflows: `[] int32`, entries (id occurrences) that asked for a row and got
        none because the table was full, since creation (saturating): the
        traffic that a full table turned away.
    """

    row_keys: jax.Array
    slots: jax.Array
    free_list: jax.Array
    num_free: jax.Array
    freq: jax.Array
    last_step: jax.Array
    step: jax.Array
    inserts: jax.Array
    removals: jax.Array
    overflows: jax.Array

    @classmethod
    def create(cls, capacity: int) -> DynamicTable:
        """An empty table of `capacity` rows.

        Raises:
          ValueError: `capacity` is not an int in `[1, MAX_CAPACITY]`.
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise ValueError(f"capacity must be an int, got {capacity!r}")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(
                f"capacity must be in [1, {MAX_CAPACITY}], got {capacity}; "
                "split larger tables into partitions"
            )
        capacity = int(capacity)

        # Each field gets its own buffer, so that the whole state can be donated.
        def zeros():
            return jnp.zeros((capacity,), jnp.int32)

        def scalar():
            return jnp.zeros((), jnp.int32)

        return cls(
            row_keys=jnp.zeros((capacity, 2), jnp.uint32),
            slots=_index.create(capacity),
            free_list=jnp.arange(capacity - 1, -1, -1, dtype=jnp.int32),
            num_free=jnp.asarray(capacity, jnp.int32),
            freq=zeros(),
            last_step=zeros(),
            step=scalar(),
            inserts=scalar(),
            removals=scalar(),
            overflows=scalar(),
        )

    @property
    def capacity(self) -> int:
        return self.row_keys.shape[0]


def flat_inputs(
    keys: ids_lib.IdsLike, **masks: jax.Array | None
) -> tuple[ids_lib.Ids, tuple[int, ...], list[jax.Array]]:
    """Checks and flattens the keys and their same-shaped masks (None: all True)."""
    ids = ids_lib.as_ids(keys)
    flat_masks = []
    for name, mask in masks.items():
        if mask is None:
            flat_masks.append(jnp.ones((ids.size,), bool))
            continue
        mask = jnp.asarray(mask)
        if mask.shape != ids.shape:
            raise ValueError(
                f"{name} mask has shape {mask.shape}, expected the shape of the "
                f"keys {ids.shape} (one entry per key)"
            )
        if not (mask.dtype == bool or jnp.issubdtype(mask.dtype, jnp.integer)):
            raise TypeError(f"{name} mask must be bool, got dtype {mask.dtype}")
        flat_masks.append(mask.reshape(-1).astype(bool))
    return ids.reshape(-1), ids.shape, flat_masks


def lookup(
    table: DynamicTable, keys: ids_lib.IdsLike, *, valid: jax.Array | None = None
) -> jax.Array:
    """Rows of `keys`, EMPTY (-1) where absent. Changes nothing.

    Args:
      table: the table.
      keys: int64 ids of any shape, as `ids.Ids` (or see `ids.as_ids`).
      valid: optional bool mask of the shape of `keys`; False entries (padding)
        give EMPTY.

    Returns:
      `int32` rows, the shape of `keys`.

    Raises:
      TypeError: float keys (the message names the dtype).
      ValueError: `valid` of another shape than `keys`.
    """
    ids, shape, (valid,) = flat_inputs(keys, valid=valid)
    with jax.named_scope("aj.table.lookup"):
        cand = _index.candidates(ids, table.slots)
        found = _index.probe(table.slots, table.row_keys, ids, cand)
        return jnp.where(valid, found.row, EMPTY).reshape(shape)


class Found(NamedTuple):
    """Where flat keys are, from `find`; `insert_absent` takes it, so that a
    caller can decide which absent keys to insert (an admission policy) between
    the two without probing twice."""

    ids: ids_lib.Ids  # [n] the keys
    candidates: _index.Candidates  # their buckets and tags
    rows: jax.Array  # [n] int32, EMPTY where absent


def find(table: DynamicTable, keys: ids_lib.IdsLike) -> Found:
    """Finds the flat `keys` (`[n]`); changes nothing. See `insert_absent`."""
    ids = ids_lib.as_ids(keys).reshape(-1)
    with jax.named_scope("aj.table.find"):
        cand = _index.candidates(ids, table.slots)
        return Found(
            ids, cand, _index.probe(table.slots, table.row_keys, ids, cand).row
        )


def set_frequency(
    table: DynamicTable, rows: jax.Array, where: jax.Array, freq: jax.Array
) -> DynamicTable:
    """Sets `freq` of `rows[where]` to `freq[where]` (saturating at INT32_MAX):
    a key admitted by a filter brings the count it had before its row."""
    at = jnp.where(where & (rows >= 0), rows, table.capacity)
    return table.replace(freq=table.freq.at[at].set(freq, mode="drop"))


def live_rows(table: DynamicTable) -> jax.Array:
    """`[capacity] bool`: which rows hold a key. O(capacity)."""
    position = jnp.arange(table.capacity, dtype=jnp.int32)
    free = jnp.where(position < table.num_free, table.free_list, table.capacity)
    return jnp.ones((table.capacity,), bool).at[free].set(False, mode="drop")


def num_live(table: DynamicTable) -> jax.Array:
    """`[] int32`: how many rows hold a key."""
    return table.capacity - table.num_free


def advance_step(table: DynamicTable, steps: int | jax.Array = 1) -> DynamicTable:
    """Moves the global step on by `steps` (saturating)."""
    return table.replace(step=_numerics.saturating_add(table.step, jnp.int32(steps)))
