"""What a promoted id's bucket tells about the value it goes on to learn.

Run: `python benchmarks/migration_probe.py [--data real|synthetic]
[--buckets col|FRACTION] [--migration none] [--seeds 0 1 2]`.

Trains the CTR example's adaptive variant for its pass (the real slice, or the
default synthetic set) and, at each step, notes the ids promoted into the
dynamic table and the value of their static bucket just before (what
migration copies). At the end it compares each promoted id's final row with
that bucket value, over all promoted ids and coordinates: the Pearson
correlation, the mean cosine, the ratio of norms, and the least-squares slope
of final on bucket. With `--migration none` (rows start from the
initializer), a correlation is what the bucket knew that the row learnt on
its own, so it measures how much a copy could give; with "deeprec" or "warm",
how much of the copy survives. One JSON line per seed, then their mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings

import jax
import numpy as np

from adaptive_jax import data, export
from adaptive_jax import ids as ids_lib
from adaptive_jax.examples.ctr import cli, run, train, variants
from adaptive_jax.examples.ctr import model as model_lib


def _fraction(text: str) -> float:
    top, _, bottom = text.partition("/")
    return float(top) / float(bottom or 1)


def probe(args: argparse.Namespace, seed: int) -> dict[str, float]:
    if args.data == "real":
        directory = data.default_directory().parent / "criteo_slice"
        files = [str(directory / "train.txt.gz"), str(directory / "test.txt.gz")]
    else:
        found = data.ensure_dataset(args.data_dir)
        files = [str(found.train), str(found.test)]
    options = cli.parser().parse_args(
        ["--train", files[0], "--test", files[1], "--seed", str(seed),
         "--batch-size", str(args.batch_size), "--no-progress"]
    )  # fmt: skip
    dataset = run.dataset(options)
    found = run.survey(dataset, options)
    counts = found.train
    buckets = None
    if args.buckets != "col":
        rare = sum(counts.rare(k, 3) for k in counts.distinct)
        buckets = max(26, round(_fraction(args.buckets) * rare))
    settings = variants.Settings(
        migration=args.migration, adaptive_hash_bucket_size=buckets
    )
    columns = variants.columns("adaptive", counts, settings)
    model = model_lib.DeepFM(settings.dimension)
    optimizers = train.optimizers(settings.learning_rate)
    state = train.init(columns, model, optimizers, jax.random.key(seed), 1)
    step = train.make_step(columns, model, optimizers, settings.evict_every)
    params, opt_state, tables = state.params, state.opt_state, state.tables
    promoted: dict[int, np.ndarray] = {}  # key -> its bucket's value then
    before = export.export(tables, columns, drop_zero_rows=False)
    (name,) = before.columns
    for batch in run.reader(dataset.train, options, test=False):
        (ids, dense, labels, weights), _ = train._device_batch(
            batch, columns, options.batch_size
        )
        inputs = ids[name]
        keys = ids_lib.to_numpy(inputs.ids.values)
        buckets = np.asarray(inputs.buckets).tolist()
        bucket_of = dict(zip(keys.tolist(), buckets, strict=True))
        static = before.columns[name].static
        params, opt_state, tables, _ = step(
            params, opt_state, tables, ids, dense, labels, weights
        )
        after = export.export(tables, columns, drop_zero_rows=False)
        new = np.setdiff1d(after.columns[name].keys, before.columns[name].keys)
        for key in new.tolist():
            promoted.setdefault(key, static[bucket_of[key]].copy())
        before = after
    final = before.columns[name]
    row = {k: i for i, k in enumerate(final.keys.tolist())}
    kept = [k for k in promoted if k in row]
    start = np.stack([promoted[k] for k in kept])
    end = np.stack([final.values[row[k]] for k in kept])
    cosine = np.sum(start * end, 1) / (
        np.linalg.norm(start, axis=1) * np.linalg.norm(end, axis=1) + 1e-12
    )
    slope = float(np.sum(start * end) / np.sum(start * start))
    return {
        "seed": seed,
        "promoted": len(kept),
        "pearson": float(np.corrcoef(start.ravel(), end.ravel())[0, 1]),
        "mean_cosine": float(cosine.mean()),
        "norm_ratio": float(np.linalg.norm(end) / np.linalg.norm(start)),
        "slope": slope,
        "bucket_rms": float(np.sqrt(np.mean(start**2))),
        "final_rms": float(np.sqrt(np.mean(end**2))),
    }


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("real", "synthetic"), default="real")
    p.add_argument("--data-dir", help="the synthetic set (default: the demo's)")
    p.add_argument("--buckets", default="col", help='"col" or a fraction of rare ids')
    p.add_argument("--migration", default="none")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--batch-size", type=int)
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or (128 if args.data == "real" else 1024)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MalformedLineWarning)
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        for seed in args.seeds:
            rows.append(probe(args, seed))
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({
        "data": args.data, "buckets": args.buckets, "migration": args.migration,
        **{k: statistics.fmean(r[k] for r in rows) for k in rows[0] if k != "seed"},
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
