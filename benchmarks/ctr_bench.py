"""The claim of adaptive columns, measured with the CTR example's DeepFM.

Run: `python benchmarks/ctr_bench.py [--seeds 0 1 2] [--num-train 200000]
[--num-test 50000] [--quick]`.

For each seed (it picks the synthetic data set, drawn from its own hidden click
model, and the model's init), on the same data: the four variants of
`adaptive_jax.examples.ctr` (static, dynamic, filtered, adaptive with
migration "deeprec"), the adaptive variant under each other migration of
`adaptive.MIGRATIONS` ("warm", "copy", "none": new rows from the initializer),
and the static variant at each size of the `hash_bucket_size` sweep; with the
cold-start curve, the AUC of the test examples holding 0, 1, 2 and 3 or more
ids first seen late in the stream. Prints a
JSON line per run, then a `summary` line: per configuration the mean and the
standard deviation over seeds, and per seed the targets:

- `export_ratio`: adaptive's export over the plain dynamic table's (<= 0.20);
- `auc_vs_dynamic`: adaptive's AUC minus the plain dynamic table's (>= -0.003);
- `auc_vs_static_at_bytes`: adaptive's AUC minus the static sweep's,
  interpolated (linearly in log bytes) at adaptive's export bytes (>= 0.004);
- `auc_vs_filtered`: adaptive's AUC minus the filtered table's (> 0).

The data sets go to `--data-root` (default: the user's cache), one per seed and
size, and are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from adaptive_jax import adaptive, data
from adaptive_jax.examples.ctr import run, train, variants

SWEEP = (2**15, 2**16, 2**17, 2**18)


def _args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--num-train", type=int, default=data.synthetic.DEFAULT_TRAIN)
    p.add_argument("--num-test", type=int, default=data.synthetic.DEFAULT_TEST)
    p.add_argument("--data-root", type=pathlib.Path, default=None)
    p.add_argument("--quick", action="store_true", help="20K examples, one seed")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.num_train, args.num_test = [0], 20_000, 5_000
    return args


def _runs(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration on the data set of `seed`."""
    root = args.data_root or data.default_directory().parent / "bench"
    directory = root / f"seed{seed}_{args.num_train}_{args.num_test}"
    options = run.parser().parse_args(
        ["--data-dir", str(directory), "--num-train", str(args.num_train),
         "--num-test", str(args.num_test), "--data-seed", str(seed),
         "--seed", str(seed), "--no-progress"]
    )  # fmt: skip
    files = run.dataset(options)
    counts, _ = run.check_and_scan(files, options)
    settings = variants.Settings()
    configs = [(v, settings, v) for v in variants.VARIANTS]
    for migration in adaptive.MIGRATIONS:
        if migration != settings.migration:
            changed = dataclasses.replace(settings, migration=migration)
            configs.append(("adaptive", changed, f"adaptive/{migration}"))
    for buckets in SWEEP:
        if buckets != settings.hash_bucket_size:
            changed = dataclasses.replace(settings, hash_bucket_size=buckets)
            configs.append(("static", changed, f"static/{buckets}"))
    results = []
    for variant, config, name in configs:
        result = run.run_variant(variant, config, counts, files, options)
        result |= {"name": name, "seed": seed, "examples": counts.examples}
        for late, auc in (result["auc_by_late_ids"] or {}).items():
            result[f"auc_late_ids_{late}"] = auc  # the cold-start curve
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def _static_auc_at(results: list[dict[str, Any]], export_bytes: float) -> float:
    """The static sweep's AUC at `export_bytes`, linear in log bytes."""
    sweep = sorted(
        (r["export_bytes"], r["auc"]) for r in results if r["variant"] == "static"
    )
    xs = np.log([b for b, _ in sweep])
    return float(np.interp(np.log(export_bytes), xs, [a for _, a in sweep]))


def _targets(results: list[dict[str, Any]]) -> dict[str, float]:
    by_name = {r["name"]: r for r in results}
    ada, dyn = by_name["adaptive"], by_name["dynamic"]
    return {
        "export_ratio": ada["export_bytes"] / dyn["export_bytes"],
        "auc_vs_dynamic": ada["auc"] - dyn["auc"],
        "auc_vs_static_at_bytes": ada["auc"]
        - _static_auc_at(results, ada["export_bytes"]),
        "auc_vs_filtered": ada["auc"] - by_name["filtered"]["auc"],
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def main(argv: Sequence[str]) -> None:
    args = _args(argv)
    every, targets = [], {}
    for seed in args.seeds:
        results = _runs(seed, args)
        every += results
        targets[seed] = _targets(results)
        print(json.dumps({"targets": targets[seed], "seed": seed}), flush=True)
    curve = tuple(f"auc_late_ids_{late}" for late in train.LATE_ID_BINS)
    fields = ("auc", "log_loss", "auc_late_ids", *curve, "param_bytes",
              "export_bytes", "examples_per_s")  # fmt: skip
    names = dict.fromkeys(r["name"] for r in every)
    summary = {
        name: {
            f: _spread(
                [r[f] for r in every if r["name"] == name and r.get(f) is not None]
            )
            for f in fields
        }
        for name in names
    }
    target_spread = {
        t: _spread([targets[s][t] for s in args.seeds]) for t in targets[args.seeds[0]]
    }
    print(json.dumps({"summary": summary, "targets": target_spread,
                      "num_train": args.num_train, "seeds": args.seeds}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
