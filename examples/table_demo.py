"""The dynamic table in a jit-compiled loop: int64 ids come and go at O(batch) cost.

Run: `make demo` (or `python examples/table_demo.py`).

Streams batches of Zipf-distributed int64 ids (a few hot ids, a long tail, and
ids across the whole int64 range) into a table too small to give every id a row.
Hot ids take rows first and keep them; when the table is full, new ids are
refused and counted, never written over another key; evicting the rows that no
recent batch used frees them for new ids. Every call is jitted and donates the
table, so it is updated in place.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import ids, table

CAPACITY = 20_000
BATCH = 16_384
RAW_IDS = 1_000_000
STALE_AFTER = 4  # steps without a lookup before a row is evicted


@jax.jit
def stale_rows(state: table.DynamicTable) -> jax.Array:
    """Rows whose key has not been looked up for more than STALE_AFTER steps."""
    return state.last_step < state.step - STALE_AFTER


def main() -> None:
    rng = np.random.default_rng(0)
    raw_ids = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, RAW_IDS)
    hot = raw_ids[:3]

    lookup_or_insert = jax.jit(table.lookup_or_insert, donate_argnums=0)
    remove_rows = jax.jit(table.remove_rows, donate_argnums=0)
    advance_step = jax.jit(table.advance_step, donate_argnums=0)
    state = table.DynamicTable.create(CAPACITY)
    everyone = jnp.ones((BATCH,), bool)

    print(f"capacity {CAPACITY:,} rows; batches of {BATCH:,} ids, Zipf(1.2) over")
    print(
        f"{RAW_IDS:,} int64 ids; x64 is {'on' if jax.config.jax_enable_x64 else 'off'}"
    )
    print(f"hot ids: {hot.tolist()}\n")
    print(" step  live rows  inserted  refused  evicted  ms/batch  rows of hot ids")
    evicted = 0
    for step in range(1, 25):
        ranks = (rng.zipf(1.2, BATCH) - 1) % RAW_IDS
        batch = ids.from_numpy(raw_ids[ranks])
        start = time.perf_counter()
        state, rows = lookup_or_insert(state, batch, everyone)
        jax.block_until_ready(rows)
        ms = (time.perf_counter() - start) * 1e3
        if step % 8 == 0:
            before = int(table.num_live(state))
            state = remove_rows(state, stale_rows(state))
            evicted += before - int(table.num_live(state))
        if step % 4 == 0:
            hot_rows = table.lookup(state, ids.from_numpy(hot)).tolist()
            print(
                f"{step:5d} {int(table.num_live(state)):10,d} {int(state.inserts):9,d}"
                f" {int(state.overflows):8,d} {evicted:8,d} {ms:9.2f}  {hot_rows}"
            )
        state = advance_step(state)

    print(
        "\nThe hot ids kept their rows throughout; ids past capacity were refused"
        "\n(counted, never overwriting a key) until eviction freed stale rows."
    )


if __name__ == "__main__":
    main()
