"""Speed of the dynamic table against a dense `jnp.take` of the same rows.

Run: `python benchmarks/table_bench.py [--quick]` (or `make bench`).

A table of capacity 2**21 holds 1M live keys, inserted in random order. Each
run draws a fresh batch of 65,536 ids, as a training loop would see them: ranks
Zipf(1.1) over the 1M live ids of 10M raw ids (a rank picks a random int64 id),
absent ones drawn from the other 9M, never twice:

- `lookup_hits`: every id is live;
- `lookup_10pct_misses`: 10% of the ids replaced by absent ones;
- `lookup_or_insert_5pct_new`: 5% of the ids are new keys, inserted (the table
  grows by about 3,000 keys a batch);

each against the baseline `jnp.take(values, rows)` of the batch's rows from a dense
`[1M, 16] float32` array, timed on the same batches in the same process. Calls run
back to back under `jax.jit`, the table donated; the median of the runs after
warm-up is reported, one JSON line per measurement. The last line reports the
index's bytes per row of capacity.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from _timing import paired_medians, report, zipf_ranks

from adaptive_jax import ids, table
from adaptive_jax.table import _index

DIM = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, < 30 s")
    parser.add_argument("--capacity", type=int, default=2**21)
    parser.add_argument("--live", type=int, default=2**20)
    parser.add_argument("--raw-ids", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = 9 if args.quick else args.runs
    warmup = 4 if args.quick else 10
    rng = np.random.default_rng(args.seed)

    raw = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, args.raw_ids)
    insert = jax.jit(table.lookup_or_insert, donate_argnums=0)
    lookup = jax.jit(table.lookup)
    take = jax.jit(lambda values, rows: jnp.take(values, rows, axis=0))

    state = table.DynamicTable.create(args.capacity)
    everyone = jnp.ones((args.batch,), bool)
    for chunk in np.array_split(rng.permutation(args.live), args.live // args.batch):
        padded = np.resize(raw[chunk], args.batch)  # repeats are fine: one row each
        state, _ = insert(state, ids.from_numpy(padded), everyone)
    assert int(table.num_live(state)) == args.live
    values = jnp.asarray(rng.standard_normal((args.live, DIM), dtype=np.float32))

    absent = iter(rng.permutation(np.arange(args.live, args.raw_ids)))

    def batches(absent_rate: float):
        """Fresh batches: Zipf over the live ids, `absent_rate` of them never seen."""
        out = []
        for _ in range(runs + warmup):
            keys = raw[zipf_ranks(rng, args.batch, args.live)]
            fresh = np.flatnonzero(rng.random(args.batch) < absent_rate)
            keys[fresh] = raw[[next(absent) for _ in fresh]]
            out.append(ids.from_numpy(keys))
        return out

    def take_rows(batch):
        return jnp.maximum(lookup(state, batch), 0)

    def lookup_batch(batch):
        return lookup(state, batch)

    def insert_batch(batch):
        nonlocal state
        state, rows = insert(state, batch, everyone)
        return rows

    for name, target, absent_rate in (
        ("lookup_hits", lookup_batch, 0.0),
        ("lookup_10pct_misses", lookup_batch, 0.1),
        ("lookup_or_insert_5pct_new", insert_batch, 0.05),
    ):
        queries = [(q, take_rows(q)) for q in batches(absent_rate)]
        ms, base = paired_medians(
            lambda qr, target=target: target(qr[0]),
            lambda qr: take(values, qr[1]),
            queries,
            warmup,
        )
        report(name, ms, base)

    index_bytes = state.slots.size * state.slots.dtype.itemsize
    line = {"name": "index_bytes_per_row", "value": index_bytes / args.capacity}
    line |= {"ways": _index.WAYS, "slots_per_row": _index.SLOTS_PER_ROW}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
