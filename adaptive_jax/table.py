"""The dynamic table: a fixed-capacity map from int64 keys to rows, inside `jax.jit`.

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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import _chunks, _index, _numerics
from adaptive_jax import ids as ids_lib

EMPTY = _index.EMPTY
MAX_CAPACITY = 2**28
_CHUNKS = 16
_RELEASE_CHUNKS = 32  # rows are taken back in chunks of 1/32 of the capacity


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


def _flat_inputs(
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
    ids, shape, (valid,) = _flat_inputs(keys, valid=valid)
    with jax.named_scope("aj.table.lookup"):
        cand = _index.candidates(ids, table.slots)
        found = _index.probe(table.slots, table.row_keys, ids, cand)
        return jnp.where(valid, found.row, EMPTY).reshape(shape)


def _insert(
    table: DynamicTable,
    ids: ids_lib.Ids,
    cand: _index.Candidates,
    contending: jax.Array,
) -> tuple[DynamicTable, jax.Array]:
    """Inserts the contending entries; returns their rows, EMPTY elsewhere.

    New keys are usually a small part of a batch, so they go through in chunks of
    `1 / _CHUNKS` of the batch, in order: the rounds of `_index.claim_slots` then
    run on a chunk, not on the batch. Each chunk probes again, since a key may
    have been inserted by an earlier chunk. The loop carries the table, so that
    XLA updates it in place.
    """
    n = contending.shape[0]
    if n == 0:
        return table, jnp.full((0,), EMPTY, jnp.int32)

    def insert_chunk(state, entries, offset):
        del offset
        table, rows = state
        take = jnp.minimum(entries, n - 1)
        sub_ids, sub_cand = ids[take], jax.tree.map(lambda a: a[take], cand)
        found = _index.probe(table.slots, table.row_keys, sub_ids, sub_cand)
        absent = (entries < n) & (found.row == EMPTY)
        table, new_rows = _insert_entries(table, sub_ids, sub_cand, absent)
        return table, rows.at[entries].set(
            jnp.maximum(found.row, new_rows), mode="drop"
        )

    start = (table, jnp.full((n,), EMPTY, jnp.int32))
    return _chunks.for_each_chunk(contending, -(-n // _CHUNKS), insert_chunk, start)


def _insert_entries(
    table: DynamicTable,
    ids: ids_lib.Ids,
    cand: _index.Candidates,
    contending: jax.Array,
) -> tuple[DynamicTable, jax.Array]:
    """Gives each distinct contending key a slot and a free row; rows per entry."""
    slots, claims = _index.claim_slots(table.slots, ids, cand, contending)
    iota = jnp.arange(contending.shape[0], dtype=jnp.int32)
    first = contending & (claims.first == iota)
    # Rows go to new keys in the order of their first occurrence, while they last.
    rank = _numerics.exclusive_count(first)
    gets_row = first & (rank < table.num_free)
    top = jnp.clip(table.num_free - 1 - rank, 0, table.capacity - 1)
    new_row = jnp.where(gets_row, table.free_list[top], EMPTY)

    slots = _index.settle(slots, claims, first, new_row, cand.tag)
    row_keys = table.row_keys.at[jnp.where(gets_row, new_row, table.capacity)].set(
        jnp.stack([ids.hi, ids.lo], axis=1), mode="drop"
    )
    rows = jnp.where(claims.first >= 0, new_row[jnp.maximum(claims.first, 0)], EMPTY)

    num_new = jnp.sum(gets_row, dtype=jnp.int32)
    table = table.replace(
        slots=slots,
        row_keys=row_keys,
        num_free=table.num_free - num_new,
        inserts=_numerics.saturating_add(table.inserts, num_new),
    )
    return table, rows


def lookup_or_insert(
    table: DynamicTable,
    keys: ids_lib.IdsLike,
    insert: jax.Array,
    *,
    valid: jax.Array | None = None,
) -> tuple[DynamicTable, jax.Array]:
    """Rows of `keys`, giving a free row to each absent key whose `insert` is True.

    Repeats of a key in the batch share one row. New keys take free rows in the
    order of their first occurrence, so the same inputs give the same rows, bit for
    bit. When rows run out, the remaining new keys get EMPTY and each of their
    entries counts in `overflows`; no key is ever overwritten. Entries whose
    `insert` is False only look up the table as it was before the call. Every
    entry that ends with a row counts one occurrence in `freq` and stamps
    `last_step` with `step`.

    Args:
      table: the table; donate it under jit.
      keys: int64 ids of any shape, as `ids.Ids` (or see `ids.as_ids`).
      insert: bool mask of the shape of `keys`: whether an absent key may get a
        row. Present keys are found whatever their mask.
      valid: optional bool mask of the shape of `keys`; False entries (padding)
        give EMPTY and touch nothing.

    Returns:
      `(table, rows)`: the new table, and `int32` rows of the shape of `keys`,
      EMPTY (-1) for absent keys that got no row.

    Raises:
      TypeError: float keys or masks (the message names the dtype).
      ValueError: a mask of another shape than `keys`.
    """
    table, rows, _ = lookup_or_insert_new(table, keys, insert, valid=valid)
    return table, rows


def lookup_or_insert_new(
    table: DynamicTable,
    keys: ids_lib.IdsLike,
    insert: jax.Array,
    *,
    valid: jax.Array | None = None,
) -> tuple[DynamicTable, jax.Array, jax.Array]:
    """`lookup_or_insert`, that also says which entries got a new row.

    For a caller that keeps data beside the rows (an embedding variable's values
    and optimizer slots) and must initialise the rows handed out.

    Returns:
      `(table, rows, new)`: as `lookup_or_insert`, and `new`, a bool array of the
      shape of `keys`, True for every entry of a key inserted by this call.
    """
    ids, shape, (insert, valid) = _flat_inputs(keys, insert=insert, valid=valid)
    table, rows, new = insert_absent(
        table, find(table, ids), insert & valid, valid=valid
    )
    return table, rows.reshape(shape), new.reshape(shape)


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


def insert_absent(
    table: DynamicTable,
    found: Found,
    insert: jax.Array,
    *,
    valid: jax.Array,
    weights: jax.Array | None = None,
) -> tuple[DynamicTable, jax.Array, jax.Array]:
    """Gives rows to the absent keys of `found` whose `insert` is True.

    As `lookup_or_insert`, after `find`: repeats share a row, rows go in the
    order of first occurrence, refused entries count in `overflows`, and every
    valid entry that ends with a row counts in `freq` and `last_step`.

    Args:
      table: the table `found` was found in; donate it under jit.
      found: `find`'s result.
      insert: `[n] bool`, which entries may insert their key if it is absent.
      valid: `[n] bool`; False entries get EMPTY and touch nothing.
      weights: `[n] int32`, occurrences each entry stands for in `freq` and
        `overflows` (1 if None): an entry for the repeats of its key, merged
        before an exchange.

    Returns:
      `(table, rows, new)`, flat: rows EMPTY where none; `new` True for every
      entry of a key inserted now.
    """
    with jax.named_scope("aj.table.insert_absent"):
        contending = valid & insert & (found.rows == EMPTY)
        table, new_rows = _insert(table, found.ids, found.candidates, contending)
        refused = contending & (new_rows == EMPTY)
        refused = jnp.sum(
            refused if weights is None else jnp.where(refused, weights, 0),
            dtype=jnp.int32,
        )
        table = table.replace(
            overflows=_numerics.saturating_add(table.overflows, refused)
        )
        rows = jnp.where(valid, jnp.maximum(found.rows, new_rows), EMPTY)
        return _touch(table, rows, weights), rows, contending & (new_rows >= 0)


def set_frequency(
    table: DynamicTable, rows: jax.Array, where: jax.Array, freq: jax.Array
) -> DynamicTable:
    """Sets `freq` of `rows[where]` to `freq[where]` (saturating at INT32_MAX):
    a key admitted by a filter brings the count it had before its row."""
    at = jnp.where(where & (rows >= 0), rows, table.capacity)
    return table.replace(freq=table.freq.at[at].set(freq, mode="drop"))


def _touch(
    table: DynamicTable, rows: jax.Array, weights: jax.Array | None = None
) -> DynamicTable:
    """Counts one occurrence (or `weights`) for each row >= 0 and stamps it
    with the step."""
    at = jnp.where(rows >= 0, rows, table.capacity)
    amount = 1 if weights is None else weights
    return table.replace(
        freq=_numerics.saturating_scatter_add(table.freq, at, amount),
        last_step=table.last_step.at[at].set(table.step, mode="drop"),
    )


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
    ids, shape, (valid,) = _flat_inputs(keys, valid=valid)
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
