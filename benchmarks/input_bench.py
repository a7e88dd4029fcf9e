"""Speed of the host input: `feature_column.prepare` per core, and overlapped.

Run: `python benchmarks/input_bench.py [--quick] [--part prepare|scaling|ctr]`.

- `prepare_*`: CPU time of `feature_column.prepare` on the calling thread (one
  core), against the bare per-id loop over the same ids in the same run,
  alternated call by call: `[Fingerprint64(str(x)) for x in ids.tolist()]` for
  int64 ids, `[Fingerprint64(s) for s in strings.tolist()]` for strings
  (Criteo-like 8-character hex). Int ids spread over the whole int64 range
  (`int64`: 19-20 characters, half negative) and ids below 2**31 (`int64_small`).
  Adaptive columns with admission (no mask): one feature of 65,536 ids
  (`one`), and 26 features of 4,096 examples, as 26 columns (`26`) and as one
  stacked column (`26_stacked`). `ids_per_s` per core. Target: ratio <= 0.25.
  Int ids leave their buckets to the step (`prepare`'s default); the
  `_host_buckets` rows compute them here (`int_buckets="host"`).
- `step_buckets_*`: what the step then spends on them (`stacking.step_buckets`
  of the same prepared ids, jitted, wall time on JAX's default backend)
  against the host's bucket work (wall time of `prepare` with
  `int_buckets="host"` less the default's).
- `scaling_*`: wall ids/s of preparing 26-feature stacked batches through
  `pipeline.Prefetcher` with 1 and 2 worker threads (the consumer takes and
  drops them), the ratio against 1 worker.
- `ctr_*`: the CTR example's jitted train step (adaptive variant, batches of
  `--ctr-batch`), examples/s over the same batches in one run: the step alone
  (batches prepared beforehand), the step with `prepare` overlapped (the
  example's own path: `train.prepared`, a Prefetcher thread), and `prepare`
  then the step in one thread; passes alternated, each from the same initial
  state; `ratio` is the median over the repeats of each pass's ratio to the
  step alone run just before it (`ratio_of_medians`, that of the medians).
  Target: overlapped >= 0.9x the step alone.

One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable

import farmhash
import jax
import numpy as np
from _timing import report, zipf_ranks

import adaptive_jax as aj
from adaptive_jax import data, pipeline
from adaptive_jax import feature_column as fc
from adaptive_jax.column import stacking
from adaptive_jax.examples.ctr import model as model_lib
from adaptive_jax.examples.ctr import scan, train, variants

FIELDS = 26
RAW_IDS = 10_000_000


def thread_ms(fn: Callable[[], object]) -> float:
    """CPU time of `fn()` on this thread, ms: one core's work, whatever else
    the (shared) machine runs."""
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1e3


def raw_ids(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Zipf(1.1) ids over 10M raw ids, as `kind`: "int64" (scattered over the
    int64 range by an odd multiplier), "int64_small" (below 2**31) or "string"
    (8 hex characters)."""
    ranks = zipf_ranks(rng, int(np.prod(shape)), RAW_IDS).astype(np.uint64)
    scattered = ranks * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
    if kind == "int64":
        return scattered.view(np.int64).reshape(shape)
    if kind == "int64_small":
        return (scattered >> np.uint64(33)).astype(np.int64).reshape(shape)
    hexes = np.array([f"{v:08x}" for v in (scattered >> np.uint64(32)).tolist()])
    return hexes.reshape(shape)


def columns_of(keys: list[str], dtype: str, stacked: bool) -> list[fc.EmbeddingColumn]:
    admit = aj.EmbeddingVariableOption(filter_option=aj.CounterFilter(2))
    categorical = [
        fc.categorical_column_with_adaptive_embedding(
            k, 100_000, dtype, ev_option=admit
        )
        for k in keys
    ]
    if stacked:
        return [fc.embedding_column(fc.stacked_column(categorical, "fields"), 8)]
    return [fc.embedding_column(c, 8) for c in categorical]


def bare_loop(features: dict[str, np.ndarray], kind: str) -> Callable[[], list]:
    values = np.concatenate([v.reshape(-1) for v in features.values()])
    if kind == "string":
        return lambda: [farmhash.Fingerprint64(s) for s in values.tolist()]
    return lambda: [farmhash.Fingerprint64(str(x)) for x in values.tolist()]


def bench_prepare(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    for kind in ("int64", "int64_small", "string"):
        dtype = "string" if kind == "string" else "int64"
        one = {"f0": raw_ids(rng, (args.one_batch, 1), kind)}
        many = {f"f{i}": raw_ids(rng, (args.batch, 1), kind) for i in range(FIELDS)}
        cases = {
            "one": (one, columns_of(["f0"], dtype, False), args.one_batch),
            "26": (many, columns_of(list(many), dtype, False), args.batch),
            "26_stacked": (many, columns_of(list(many), dtype, True), None),
        }
        places = ("device", "host") if dtype == "int64" else ("device",)
        for place, (layout, (features, columns, size)) in itertools.product(
            places, cases.items()
        ):
            ids = sum(v.size for v in features.values())
            size = size or ids

            def prepare(features=features, columns=columns, size=size, place=place):
                return fc.prepare(features, columns, size=size, int_buckets=place)

            bare = bare_loop(features, kind)
            times = np.array(
                [(thread_ms(prepare), thread_ms(bare)) for _ in range(args.runs)]
            )
            ms, base = np.median(times[args.warmup :], axis=0)
            suffix = "_host_buckets" if place == "host" else ""
            report(
                f"prepare_{kind}_{layout}{suffix}",
                float(ms),
                float(base),
                ids=ids,
                ids_per_s=round(ids / ms * 1e3),
                baseline_ids_per_s=round(ids / base * 1e3),
                clock="thread CPU time",
            )
            if place == "device" and dtype == "int64":
                bench_step_buckets(args, f"{kind}_{layout}", prepare, columns)


def bench_step_buckets(
    args: argparse.Namespace, name: str, prepare: Callable, columns: list
) -> None:
    """What the step spends on int ids' buckets (`stacking.step_buckets`,
    jitted, wall time on this backend) against the host's bucket work
    (`prepare` with `int_buckets="host"` less the default's), the same ids."""
    prepared = prepare()
    step_buckets = jax.jit(stacking.step_buckets, static_argnums=(1, 2))

    def on_device() -> float:
        start = time.perf_counter()
        jax.block_until_ready(
            [
                step_buckets(
                    prepared[c.name],
                    c.categorical_column.hash_bucket_size,
                    c.categorical_column.members,
                )
                for c in columns
            ]
        )
        return (time.perf_counter() - start) * 1e3

    def on_host() -> float:
        start = time.perf_counter()
        prepare(place="host")
        host = time.perf_counter() - start
        start = time.perf_counter()
        prepare()
        return (host - (time.perf_counter() - start)) * 1e3

    times = np.array([(on_device(), on_host()) for _ in range(args.runs)])
    ms, base = np.median(times[args.warmup :], axis=0)
    report(
        f"step_buckets_{name}",
        float(ms),
        float(base),
        baseline="the host's bucket work in prepare",
        backend=jax.default_backend(),
        clock="wall",
    )


def bench_scaling(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    for kind in ("int64", "string"):
        dtype = "string" if kind == "string" else "int64"
        batches = [
            {f"f{i}": raw_ids(rng, (args.batch, 1), kind) for i in range(FIELDS)}
            for _ in range(4)
        ] * (args.scaling_batches // 4)
        columns = columns_of(list(batches[0]), dtype, True)

        def prepare(features, columns=columns):
            return fc.prepare(features, columns, size=args.batch * FIELDS)

        rates = {}
        for _ in range(args.scaling_repeats):
            for workers in (1, 2):
                start = time.perf_counter()
                with pipeline.Prefetcher(
                    batches, prepare, workers=workers, depth=workers + 1
                ) as it:
                    for _ in it:
                        pass
                seconds = time.perf_counter() - start
                rates.setdefault(workers, []).append(
                    len(batches) * args.batch * FIELDS / seconds
                )
        one, two = (float(np.median(rates[w])) for w in (1, 2))
        print_line(
            f"scaling_{kind}_26_stacked",
            ids_per_s_1_worker=round(one),
            ids_per_s_2_workers=round(two),
            ratio=round(two / one, 3),
        )


def print_line(name: str, **fields) -> None:
    import json

    print(json.dumps({"name": name, **fields}), flush=True)


def bench_ctr(args: argparse.Namespace) -> None:
    batch_size = args.ctr_batch
    with tempfile.TemporaryDirectory() as directory:
        files = data.ensure_dataset(
            directory, num_train=batch_size * args.ctr_batches, num_test=1000
        )
        batches = list(data.CriteoReader(files.train, batch_size=batch_size))
    counts = scan.scan(batches)
    settings = variants.Settings()
    columns = variants.columns("adaptive", counts, settings)
    model = model_lib.DeepFM(settings.dimension)
    optimizers = train.optimizers(settings.learning_rate)
    step = train.make_step(columns, model, optimizers, settings.evict_every)
    examples = sum(b.size for b in batches)

    def fresh():
        state = train.init(columns, model, optimizers, jax.random.key(0), batch_size)
        return state.params, state.opt_state, state.tables

    def run(inputs) -> float:
        """Seconds of one pass of steps over `inputs` (prepared batches)."""
        params, opt_state, tables = fresh()
        jax.block_until_ready(tables)
        start = time.perf_counter()
        for device_batch, _ in inputs:
            params, opt_state, tables, _ = step(
                params, opt_state, tables, *device_batch
            )
        jax.block_until_ready(tables)
        return time.perf_counter() - start

    def alone() -> float:
        ready = [train._device_batch(b, columns, batch_size) for b in batches]
        jax.block_until_ready(ready)
        return run(ready)

    def overlapped() -> float:
        with train.prepared(batches, columns, batch_size) as inputs:
            return run(inputs)

    def in_series() -> float:
        return run(train._device_batch(b, columns, batch_size) for b in batches)

    modes = {"alone": alone, "overlapped": overlapped, "in_series": in_series}
    for fn in modes.values():  # compile, warm up
        fn()
    seconds = {name: [] for name in modes}
    for _ in range(args.ctr_repeats):
        for name, fn in modes.items():
            seconds[name].append(fn())
    rate = {name: examples / float(np.median(s)) for name, s in seconds.items()}
    for name in ("overlapped", "in_series"):
        # Each repeat's ratio against the step alone run just before it: the
        # machine's slow swings cancel in a pair, not across the medians.
        paired = np.array(seconds["alone"]) / np.array(seconds[name])
        print_line(
            f"ctr_step_{name}",
            examples_per_s=round(rate[name], 1),
            baseline_examples_per_s=round(rate["alone"], 1),
            ratio=round(float(np.median(paired)), 3),
            ratio_of_medians=round(rate[name] / rate["alone"], 3),
            batch_size=batch_size,
            batches=len(batches),
            repeats=args.ctr_repeats,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and batches")
    parser.add_argument(
        "--part", choices=("prepare", "scaling", "ctr"), action="append"
    )
    parser.add_argument("--one-batch", type=int, default=65_536)
    parser.add_argument("--batch", type=int, default=4096, help="examples of 26 ids")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--scaling-batches", type=int, default=32)
    parser.add_argument("--scaling-repeats", type=int, default=3)
    parser.add_argument("--ctr-batch", type=int, default=4096)
    parser.add_argument("--ctr-batches", type=int, default=16)
    parser.add_argument("--ctr-repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup = 5, 1
        args.scaling_batches, args.scaling_repeats = 8, 1
        args.ctr_batches, args.ctr_repeats = 6, 1
    parts = args.part or ["prepare", "scaling", "ctr"]
    for part in parts:
        {"prepare": bench_prepare, "scaling": bench_scaling, "ctr": bench_ctr}[part](
            args
        )


if __name__ == "__main__":
    main()
