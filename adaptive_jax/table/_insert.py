"""Insertion into the dynamic table: absent keys get free rows, in order.

New keys take free rows in the order of their first occurrence in the batch
(the same inputs give the same rows, bit for bit), through `_index`'s slot
claims, a chunk of the batch at a time; when rows run out the rest are
refused and counted, and no key is ever overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax.table import _chunks, _index
from adaptive_jax.table._table import EMPTY, DynamicTable, Found, find, flat_inputs

_CHUNKS = 16
OnRows = Callable[[Any, jax.Array, jax.Array], Any]


def _insert(
    table: DynamicTable,
    ids: ids_lib.Ids,
    cand: _index.Candidates,
    contending: jax.Array,
    carry: Any = None,
    on_rows: OnRows | None = None,
) -> tuple[DynamicTable, jax.Array, Any]:
    """Inserts the contending entries; returns their rows, EMPTY elsewhere.

    New keys are usually a small part of a batch, so they go through in chunks of
    `1 / _CHUNKS` of the batch, in order: the rounds of `_index.claim_slots` then
    run on a chunk, not on the batch. Each chunk probes again, since a key may
    have been inserted by an earlier chunk. The loop carries the table (and the
    caller's `carry`, for `on_rows`), so that XLA updates them in place.
    """
    n = contending.shape[0]
    if n == 0:
        return table, jnp.full((0,), EMPTY, jnp.int32), carry

    def insert_chunk(state, entries, offset):
        del offset
        table, rows, carry = state
        take = jnp.minimum(entries, n - 1)
        sub_ids, sub_cand = ids[take], jax.tree.map(lambda a: a[take], cand)
        found = _index.probe(table.slots, table.row_keys, sub_ids, sub_cand)
        absent = (entries < n) & (found.row == EMPTY)
        table, new_rows = _insert_entries(table, sub_ids, sub_cand, absent)
        if on_rows is not None:
            carry = on_rows(carry, entries, jnp.where(absent, new_rows, EMPTY))
        return (
            table,
            rows.at[entries].set(jnp.maximum(found.row, new_rows), mode="drop"),
            carry,
        )

    start = (table, jnp.full((n,), EMPTY, jnp.int32), carry)
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
    ids, shape, (insert, valid) = flat_inputs(keys, insert=insert, valid=valid)
    table, rows, _ = insert_absent(table, find(table, ids), insert & valid, valid=valid)
    return table, rows.reshape(shape)


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
    table, rows, new, _ = insert_absent_with(
        table, found, insert, valid=valid, weights=weights
    )
    return table, rows, new


def insert_absent_with(
    table: DynamicTable,
    found: Found,
    insert: jax.Array,
    *,
    valid: jax.Array,
    weights: jax.Array | None = None,
    carry: Any = None,
    on_rows: OnRows | None = None,
) -> tuple[DynamicTable, jax.Array, jax.Array, Any]:
    """`insert_absent`, and `on_rows(carry, entries, rows) -> carry` on each
    chunk of entries inserted, in the same loop: `entries` `[k] int32` indices
    into `found` (padded with n), `rows` the row each got now (EMPTY where it
    got none, or its key was inserted by an earlier chunk), so that a caller
    writes its new rows' data in that pass (an embedding variable's starting
    values). Returns `(table, rows, new, carry)`."""
    with jax.named_scope("aj.table.insert_absent"):
        contending = valid & insert & (found.rows == EMPTY)
        table, new_rows, carry = _insert(
            table, found.ids, found.candidates, contending, carry, on_rows
        )
        refused = contending & (new_rows == EMPTY)
        refused = jnp.sum(
            refused if weights is None else jnp.where(refused, weights, 0),
            dtype=jnp.int32,
        )
        table = table.replace(
            overflows=_numerics.saturating_add(table.overflows, refused)
        )
        rows = jnp.where(valid, jnp.maximum(found.rows, new_rows), EMPTY)
        new = contending & (new_rows >= 0)
        return _touch(table, rows, weights), rows, new, carry


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
