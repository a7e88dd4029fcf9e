"""The device comparisons that the other benchmarks do not make: each against
the plain JAX a user would write instead, on the default device (a GPU, say).

Run: `python benchmarks/gpu_step_bench.py [--quick] [--part PART ...]` (or
`python benchmarks/gpu_suite.py`, which runs each part under its own timeout).
Sizes are flags; `--quick` shrinks the defaults (explicit flags win).

Parts, one or more JSON lines each:

- `lookup`: `table.lookup` of `--batches` fresh batches of `--batch` ids
  (Zipf(1.1) over the keys of a table of capacity `--table-capacity` holding
  `--table-live`), dispatched back to back and waited for once, as a training
  loop issues them; baseline: `jnp.take` of the same rows from a dense
  `[live, 16]` array, issued the same way. Reports keys/s. table_bench.py times
  each call alone, launch and wait included: on a GPU that is latency, not
  throughput. Target: >= 1e9 keys/s at 65,536+ keys a batch.
- `step`: one training step of an adaptive column (as in step_bench.py:
  `input_layer`, the gradient of `sum(tanh(emb) * g)`, `apply_gradients`,
  sparse FTRL, jitted, state donated; a dynamic table of capacity `--capacity`
  holding `--frequent` keys, `--buckets` static buckets) against the static
  step a JAX user writes for the same batch: `jnp.take` of the batch's buckets
  from a `[buckets, 16]` table, `jax.grad` of the same loss with respect to
  the table (a dense gradient), and the dense optax update
  (`adaptive_jax.optim.ftrl`, the same FTRL) of the whole table, donated.
  Target: ratio <= 1.2. Then `adaptive_step_capacity`: the adaptive step at
  capacity `--capacity-large` against `--capacity-small`, both tables holding
  the same keys (half the small capacity), on the same batches. Target: ratio
  <= 1.2 (no O(capacity) work in a step).
- `optim`: sparse FTRL (`optim.apply_sparse` on a `[--rows, 16]` table and its
  two slots, `--batch` row ids drawn Zipf(1.1), repeats summed, donated)
  against the dense optax update (`optim.ftrl`, the same formula) of a dense
  `[batch, 16]` array holding the batch's rows (`sparse_ftrl_vs_dense_rows`:
  the row formula alone, no dedup, gather or scatter) and against a dense
  gradient of the whole table (`scatter-add`) with the optax update of the
  whole table (`sparse_ftrl_vs_dense_table`: what a JAX user writes).

Each pair is timed alternately, batch by batch (the `lookup` part: round by
round), on the same batches; the median after warm-up is reported, with the
ratio to the baseline measured in the same process.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import paired_medians, report, zipf_ranks
from step_bench import DIM, FTRL, Adaptive

from adaptive_jax import ids, optim, table

PARTS = ("lookup", "step", "optim")
# Per size flag: (full, quick) defaults.
SIZES = {
    "batch": (65_536, 16_384),
    "raw_ids": (10_000_000, 2_000_000),
    "buckets": (1_000_000, 2**18),
    "capacity": (2**21, 2**19),
    "frequent": (1_000_000, 2**18),
    "capacity_small": (2**20, 2**18),
    "capacity_large": (2**24, 2**20),
    "rows": (1_000_000, 2**18),
    "table_capacity": (2**21, 2**19),
    "table_live": (2**20, 2**18),
    "batches": (16, 8),
    "runs": (20, 6),
    "warmup": (5, 2),
}


# --- lookup -------------------------------------------------------------------


def bench_lookup(args, rng: np.random.Generator) -> None:
    capacity, live, batch = args.table_capacity, args.table_live, args.batch
    raw = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, live)
    insert = jax.jit(table.lookup_or_insert, donate_argnums=0)
    lookup = jax.jit(table.lookup)
    take = jax.jit(lambda values, rows: jnp.take(values, rows, axis=0))
    state = table.DynamicTable.create(capacity)
    fill = min(batch, live)
    everyone = jnp.ones((fill,), bool)
    for start in range(0, live, fill):
        chunk = np.resize(raw[start : start + fill], fill)  # repeats: one row each
        state, _ = insert(state, ids.from_numpy(chunk), everyone)
    assert int(table.num_live(state)) == live
    values = jnp.asarray(rng.standard_normal((live, DIM), dtype=np.float32))
    queries = [
        ids.from_numpy(raw[zipf_ranks(rng, batch, live)]) for _ in range(args.batches)
    ]
    rows = [jnp.maximum(lookup(state, q), 0) for q in queries]
    assert all(bool(jnp.all(r < live)) for r in rows)

    def lookups(_):
        jax.block_until_ready([lookup(state, q) for q in queries])

    def takes(_):
        jax.block_until_ready([take(values, r) for r in rows])

    ms, base = paired_medians(
        lookups, takes, range(args.runs + args.warmup), args.warmup
    )
    keys = batch * args.batches
    report(
        "lookup_pipelined",
        ms / args.batches,
        base / args.batches,
        keys_per_s=round(keys / (ms / 1e3)),
        baseline_keys_per_s=round(keys / (base / 1e3)),
        batch=batch,
        batches_in_flight=args.batches,
        capacity=capacity,
        live=live,
        baseline="jnp.take of the same rows, issued the same way",
    )


# --- step ---------------------------------------------------------------------


class Static:
    """The static step a JAX user writes: `jnp.take`, the dense gradient of the
    table, the dense optax update of the whole table."""

    def __init__(self, args, rng: np.random.Generator):
        init = rng.standard_normal((args.buckets, DIM), dtype=np.float32) * 0.01
        self.table = jnp.asarray(init)
        self.optimizer = optim.ftrl(**FTRL)
        self.opt_state = self.optimizer.init(self.table)
        self.g = jnp.ones((args.batch, DIM), jnp.float32)
        optimizer = self.optimizer

        def step(table, opt_state, buckets, g):
            def loss(t):
                return jnp.sum(jnp.tanh(jnp.take(t, buckets, axis=0)) * g)

            grad = jax.grad(loss)(table)
            updates, opt_state = optimizer.update(grad, opt_state, table)
            return optax.apply_updates(table, updates), opt_state

        self.step = jax.jit(step, donate_argnums=(0, 1))

    def run(self, buckets) -> None:
        self.table, self.opt_state = self.step(
            self.table, self.opt_state, buckets, self.g
        )
        jax.block_until_ready(self.table)


def adaptive(args, capacity: int, raw: np.ndarray, frequent: int) -> Adaptive:
    """step_bench's adaptive column (its jitted, donated step), at this run's
    sizes; `run((features, None))` takes a step."""
    return Adaptive(capacity, raw, frequent, args.batch, buckets=args.buckets)


def bench_step(args, rng: np.random.Generator) -> None:
    raw = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, args.raw_ids)
    adaptive_vs_static(args, rng, raw)  # its tables freed before the next two
    capacity_flatness(args, rng, raw)


def adaptive_vs_static(args, rng: np.random.Generator, raw: np.ndarray) -> None:
    ours = adaptive(args, args.capacity, raw, args.frequent)
    theirs = Static(args, rng)
    items, dynamic_share = [], []
    for _ in range(args.runs + args.warmup):
        ranks = zipf_ranks(rng, args.batch, len(raw))
        features = ours.features(ranks)
        column_ids = features["ids_embedding"]
        valid = np.asarray(column_ids.ids.valid)
        buckets = jnp.asarray(ours.buckets(ranks)[valid])
        assert buckets.shape == (args.batch,)
        dynamic_share.append(float(np.mean(np.asarray(column_ids.to_dynamic)[valid])))
        items.append((features, buckets))
    ms, base = paired_medians(
        lambda item: ours.run((item[0], None)),
        lambda item: theirs.run(item[1]),
        items,
        args.warmup,
    )
    report(
        "adaptive_vs_static_step",
        ms,
        base,
        batch=args.batch,
        capacity=args.capacity,
        frequent=args.frequent,
        buckets=args.buckets,
        dynamic_share=round(float(np.mean(dynamic_share)), 3),
        baseline="jnp.take + dense gradient + dense optax FTRL of a static table",
        target_ratio=1.2,
    )


def capacity_flatness(args, rng: np.random.Generator, raw: np.ndarray) -> None:
    held = args.capacity_small // 2
    small = adaptive(args, args.capacity_small, raw, held)
    large = adaptive(args, args.capacity_large, raw, held)
    items = [
        (small.features(zipf_ranks(rng, args.batch, len(raw))), None)
        for _ in range(args.runs + args.warmup)
    ]
    ms_large, ms_small = paired_medians(large.run, small.run, items, args.warmup)
    report(
        "adaptive_step_capacity",
        ms_large,
        ms_small,
        batch=args.batch,
        capacity=args.capacity_large,
        baseline_capacity=args.capacity_small,
        keys_held=held,
        baseline=f"the same step at capacity {args.capacity_small}",
        target_ratio=1.2,
    )


# --- optim --------------------------------------------------------------------


def bench_optim(args, rng: np.random.Generator) -> None:
    num_rows, batch = args.rows, args.batch
    spec = optim.Ftrl(**FTRL)
    dense = optim.ftrl(**FTRL)
    init = rng.standard_normal((num_rows, DIM), dtype=np.float32) * 0.01
    sparse = {"table": jnp.asarray(init)}
    sparse["slots"] = spec.init_slots(sparse["table"])
    sparse_step = jax.jit(optim.apply_sparse, static_argnums=0, donate_argnums=(1, 2))

    def dense_update(params, opt_state, grads):
        updates, opt_state = dense.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rows_step = jax.jit(dense_update, donate_argnums=(0, 1))

    def table_update(params, opt_state, rows, grads):
        grad = jnp.zeros_like(params).at[rows].add(grads)
        return dense_update(params, opt_state, grad)

    table_step = jax.jit(table_update, donate_argnums=(0, 1))
    order = rng.permutation(num_rows)
    items, distinct = [], []
    for _ in range(args.runs + args.warmup):
        rows = order[zipf_ranks(rng, batch, num_rows)].astype(np.int32)
        distinct.append(np.unique(rows).size)
        grads = rng.standard_normal((batch, DIM), dtype=np.float32)
        items.append((jnp.asarray(rows), jnp.asarray(grads)))

    def run_sparse(item):
        rows, grads = item
        sparse["table"], sparse["slots"] = sparse_step(
            spec, sparse["table"], sparse["slots"], rows, grads
        )
        jax.block_until_ready(sparse["table"])

    # The batch's rows as one dense array (the first batch's: the formula's cost
    # does not depend on which rows), and its optax state.
    batch_rows = {"params": jnp.asarray(init[np.asarray(items[0][0])])}
    batch_rows["state"] = dense.init(batch_rows["params"])

    def run_rows(item):
        _, grads = item
        batch_rows["params"], batch_rows["state"] = rows_step(
            batch_rows["params"], batch_rows["state"], grads
        )
        jax.block_until_ready(batch_rows["params"])

    whole = {"params": jnp.asarray(init)}
    whole["state"] = dense.init(whole["params"])

    def run_table(item):
        rows, grads = item
        whole["params"], whole["state"] = table_step(
            whole["params"], whole["state"], rows, grads
        )
        jax.block_until_ready(whole["params"])

    extra = dict(batch=batch, rows=num_rows, distinct_rows=int(np.median(distinct)))
    ms, base = paired_medians(run_sparse, run_rows, items, args.warmup)
    report(
        "sparse_ftrl_vs_dense_rows",
        ms,
        base,
        baseline="optax update (optim.ftrl) of a dense [batch, 16] array of the rows",
        **extra,
    )
    ms, base = paired_medians(run_sparse, run_table, items, args.warmup)
    report(
        "sparse_ftrl_vs_dense_table",
        ms,
        base,
        baseline="dense gradient (scatter-add) + optax update of the whole table",
        **extra,
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smaller defaults")
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seed", type=int, default=0)
    for name, (full, quick) in SIZES.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            help=f"default {full}; --quick: {quick}",
        )
    args = parser.parse_args(argv)
    for name, (full, quick) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.frequent > args.capacity or args.table_live > args.table_capacity:
        parser.error("a table cannot hold more keys than its capacity")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = jax.devices()[0]
    print(
        json.dumps(
            {
                "name": "device",
                "platform": device.platform,
                "device_kind": device.device_kind,
                "parts": args.part,
            }
        ),
        flush=True,
    )
    for part in args.part:
        bench = {"lookup": bench_lookup, "step": bench_step, "optim": bench_optim}
        bench[part](args, np.random.default_rng(args.seed))


if __name__ == "__main__":
    main()
