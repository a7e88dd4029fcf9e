"""Sparse row updates of a table and its row-aligned slots, O(ids x dim) a step.

Given a table `[num_rows, dim]`, its slots (each `[num_rows, dim]`, row for row)
and a batch of (row id, row gradient) pairs with repeats, `apply_sparse` sums the
repeats per row, as TensorFlow's optimizers do before their sparse kernels, then
gathers, updates and scatters only those rows: no dense gradient, no pass over
the other rows. Jit it with the table and slots donated, so that the scatters
write in place.

Non-finite updates: a row whose new value or slots would not be finite (a NaN
or inf in its summed gradient, or an overflow such as a gradient past 1.8e19,
whose square is inf in float32) is left as it was and counted, so that a table
never holds a NaN or inf. TensorFlow's sparse kernels write such rows (a NaN
gradient leaves an FTRL weight 0 and its slots NaN, for good); the dense optax
transforms (`ftrl`, `adagrad`) keep TensorFlow's behaviour, element for element.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from adaptive_jax import _numerics
from adaptive_jax.table import _dedup

_CHUNKS = 8


def first_occurrence(rows: jax.Array, valid: jax.Array) -> jax.Array:
    """For each valid entry, the index of the first valid entry with its row
    (-1 where invalid), sort-free (see `_dedup`).

    Args:
      rows: `[k] int32` row ids.
      valid: `[k] bool`.

    Returns:
      `[k] int32`.
    """
    return _dedup.first_occurrence((rows,), valid)


def apply_sparse(
    optimizer: Any,
    table: jax.Array,
    slots: Any,
    rows: jax.Array,
    grads: jax.Array,
    *,
    valid: jax.Array | None = None,
    count: jax.Array | int = 0,
    check_rows: bool = False,
    skip_nonfinite: bool = True,
) -> tuple[jax.Array, Any]:
    """One optimizer step on the rows of a batch; other rows stay as they are.

    Args:
      optimizer: an `Ftrl` or `Adagrad` spec (static under jit).
      table: `[num_rows, dim]`; donate it under jit.
      slots: the optimizer's slots, each `[num_rows, dim]`; donate them too.
      rows: `[k] int32` row ids, repeats allowed.
      grads: `[k, dim]` row gradients.
      valid: optional `[k] bool`; False entries (padding) are skipped.
      count: step count, for a learning-rate schedule.
      check_rows: if True, a row id outside `[0, num_rows)` fails a `checkify`
        check (run the step under `checkify.checkify`). Either way such an id is
        skipped: it never writes to another row.
      skip_nonfinite: if True (the default), a row whose update is not finite
        keeps its value and slots (`sparse_update` counts them); False writes
        TensorFlow's result as it is.

    Returns:
      `(table, slots)` with the batch's rows updated.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptive_jax import optim
      >>> spec = optim.Ftrl(0.1)
      >>> table = jnp.ones((4, 2))
      >>> slots = spec.init_slots(table)
      >>> grads = jnp.ones((3, 2))
      >>> table, slots = apply_sparse(spec, table, slots, jnp.array([1, 3, 1]), grads)
      >>> [round(w, 3) for w in table[:, 0].tolist()]  # row 1 summed two gradients
      [1.0, 0.745, 1.0, 0.603]
    """
    table, slots, _ = sparse_update(
        optimizer,
        table,
        slots,
        rows,
        grads,
        valid=valid,
        count=count,
        check_rows=check_rows,
        skip_nonfinite=skip_nonfinite,
    )
    return table, slots


def sparse_update(
    optimizer: Any,
    table: jax.Array,
    slots: Any,
    rows: jax.Array,
    grads: jax.Array,
    *,
    valid: jax.Array | None = None,
    count: jax.Array | int = 0,
    check_rows: bool = False,
    skip_nonfinite: bool = True,
) -> tuple[jax.Array, Any, jax.Array]:
    """`apply_sparse`, and `[] int32` the rows it left as they were because
    their update was not finite."""
    num_rows, dim = table.shape
    if rows.ndim != 1 or grads.shape != (rows.shape[0], dim):
        raise ValueError(
            f"rows must be [k] and grads [k, {dim}] (one gradient row per id), got "
            f"rows {rows.shape} and grads {grads.shape}"
        )
    if rows.shape[0] == 0:
        return table, slots, jnp.zeros([], jnp.int32)
    given = jnp.ones(rows.shape, bool) if valid is None else valid.astype(bool)
    in_range = (rows >= 0) & (rows < num_rows)
    if check_rows:
        bad = jnp.argmax(given & ~in_range)
        checkify.check(
            jnp.all(in_range | ~given),
            "apply_sparse: row id {row} at entry {entry} is outside [0, {n})",
            row=rows[bad],
            entry=bad,
            n=jnp.int32(num_rows),
        )
    rows = jnp.where(given & in_range, rows, num_rows)
    ((table, slots),), skipped = _update_distinct_rows(
        ((optimizer, table, slots, rows),), grads, count, skip_nonfinite
    )
    return table, slots, skipped


def apply_sparse_split(
    updates: Sequence[tuple[Any, jax.Array, Any, jax.Array]],
    grads: jax.Array,
    *,
    count: jax.Array | int = 0,
    skip_nonfinite: bool = True,
) -> list[tuple[jax.Array, Any]]:
    """`apply_sparse` on several tables at once: `sparse_update_split` without
    the count of skipped rows."""
    tables, _ = sparse_update_split(
        updates, grads, count=count, skip_nonfinite=skip_nonfinite
    )
    return tables


def sparse_update_split(
    updates: Sequence[tuple[Any, jax.Array, Any, jax.Array]],
    grads: jax.Array,
    *,
    count: jax.Array | int = 0,
    skip_nonfinite: bool = True,
) -> tuple[list[tuple[jax.Array, Any]], jax.Array]:
    """`sparse_update` on several tables at once, each entry training at most
    one of them: one pass to sum repeats and one loop over the distinct rows of
    all, not one per table (a column's static and dynamic tables: about half
    the compiled kernels of two calls).

    Args:
      updates: `(optimizer, table, slots, rows)` per table: `rows` `[k] int32`,
        the entry's row in that table, out of `[0, num_rows)` where the entry
        trains another table or none. Donate the tables and slots under jit.
      grads: `[k, dim]` row gradients.
      count: step count, for a learning-rate schedule.
      skip_nonfinite: as `sparse_update`'s.

    Returns:
      `((table, slots) per table, in order; [] int32 the rows of all tables
      left as they were, their update not finite)`.

    Raises:
      ValueError: grads not `[k, dim]` for some table, or the tables' rows add
        up to 2**31 or more.
    """
    k = grads.shape[0]
    for _, table, _, rows in updates:
        if rows.shape != (k,) or grads.shape[1:] != table.shape[1:]:
            raise ValueError(
                f"rows must be [{k}] and each table [num_rows, {grads.shape[1:]}]"
                f", got rows {rows.shape} and a table {table.shape}"
            )
    if sum(table.shape[0] for _, table, _, _ in updates) >= 2**31:
        raise ValueError("sparse_update_split: the tables' rows must add up to < 2**31")
    if k == 0:
        return [(t, s) for _, t, s, _ in updates], jnp.zeros([], jnp.int32)
    return _update_distinct_rows(tuple(updates), grads, count, skip_nonfinite)


def _finite_rows(value: jax.Array, slots: Any) -> jax.Array:
    """`[c] bool`: the rows whose value and slots are all finite."""
    finite = jnp.all(jnp.isfinite(value), axis=1)
    for slot in slots:
        finite &= jnp.all(jnp.isfinite(slot), axis=1)
    return finite


def _update_distinct_rows(updates, grads, count, skip_nonfinite):
    """Sums repeats into a compact buffer of distinct rows, then updates those rows
    in chunks of `1 / _CHUNKS` of the batch: the work follows the distinct rows
    (a fifth of a Zipf batch, say), not the batch. The loop carries the tables
    and slots, so that XLA updates them in place; a row whose update is not
    finite writes nothing (with `skip_nonfinite`), and is counted.

    Rows of several tables are told apart by an offset: table `t`'s row `r` is
    `offsets[t] + r` in the combined numbering; out-of-range rows are skipped."""
    sizes = [table.shape[0] for _, table, _, _ in updates]
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    total = sum(sizes)
    key = jnp.full(grads.shape[:1], total, jnp.int32)
    for (_, _, _, rows), offset, size in zip(updates, offsets, sizes, strict=True):
        mine = (rows >= 0) & (rows < size) & (key == total)
        key = jnp.where(mine, rows + offset, key)
    valid = key < total
    k = key.shape[0]
    first = first_occurrence(key, valid)
    iota = jnp.arange(k, dtype=jnp.int32)
    representative = first == iota
    rank = _numerics.exclusive_count(representative)
    chunk = -(-k // _CHUNKS)
    size = chunk * _CHUNKS  # >= k, so that every chunk is a whole slice
    compact = jnp.where(valid, rank[jnp.maximum(first, 0)], size)
    summed = jax.ops.segment_sum(grads, compact, num_segments=size)
    unique = jnp.full((size,), total, jnp.int32)
    unique = unique.at[jnp.where(representative, rank, size)].set(key, mode="drop")
    distinct = rank[-1] + representative[-1].astype(jnp.int32)
    num_chunks = -(-distinct // chunk)

    def update_chunk(state):
        index, tables, skipped = state
        at = jax.lax.dynamic_slice_in_dim(unique, index * chunk, chunk)
        grad = jax.lax.dynamic_slice_in_dim(summed, index * chunk, chunk)
        new_tables = []
        for (optimizer, _, _, _), (table, slots), offset, rows in zip(
            updates, tables, offsets, sizes, strict=True
        ):
            mine = (at >= offset) & (at < offset + rows)
            row = jnp.where(mine, at - offset, rows)
            value = table.at[row].get(mode="fill", fill_value=0)
            old = type(slots)(
                *(s.at[row].get(mode="fill", fill_value=0) for s in slots)
            )
            value, new = optimizer.update(value, old, grad.astype(value.dtype), count)
            if skip_nonfinite:
                bad = mine & ~_finite_rows(value, new)
                skipped += jnp.sum(bad, dtype=jnp.int32)
                row = jnp.where(bad, rows, row)
            table = table.at[row].set(value, mode="drop")
            slots = type(slots)(
                *(
                    s.at[row].set(n, mode="drop")
                    for s, n in zip(slots, new, strict=True)
                )
            )
            new_tables.append((table, slots))
        return index + 1, tuple(new_tables), skipped

    tables = tuple((table, slots) for _, table, slots, _ in updates)
    with jax.named_scope("aj.optim.apply_sparse"):
        _, tables, skipped = jax.lax.while_loop(
            lambda state: state[0] < num_chunks,
            update_chunk,
            (jnp.int32(0), tables, jnp.int32(0)),
        )
    return list(tables), skipped


def set_rows(slots: Any, rows: jax.Array, values: Any) -> Any:
    """Writes row values into each array of `slots` (a tuple of `[num_rows, dim]`):
    to reset rows on eviction, or warm them on migration. Rows outside the table,
    negative ones included, are skipped."""

    def write(array: jax.Array, rows_values: jax.Array) -> jax.Array:
        at = jnp.where((rows >= 0) & (rows < array.shape[0]), rows, array.shape[0])
        return array.at[at].set(rows_values.astype(array.dtype), mode="drop")

    return type(slots)(*map(write, slots, values))
