"""Where a bucket costs AUC: in serving rare ids, or in the training it shares.

Run: `python benchmarks/bucket_probe.py --data NAME [--seeds 0 1 2 3 4 5]
[--learning-rate 0.01] [--init-stddev 0.01]`, NAME a real set that
`benchmarks/data/` builds into the cache (`lastfm`, `bookcrossing`,
`criteo_slice`, ...).

Trains the CTR example's default adaptive variant (one bucket per field,
threshold 3, migration "fitted") and its filtered variant (the same rows and
admission, rare ids read 0) for one pass per seed, and scores on the test
split:

- `adaptive`: the serving export as trained;
- `adaptive_served_0`: the same trained model, its buckets set to 0 in the
  export: rare and unseen ids served 0, as the filtered table serves them;
- `adaptive_held_0`: the adaptive variant trained with its buckets held at 0
  (reset after every step): rare ids read 0 in training too, the rows,
  admission and dense model as in `adaptive`;
- `filtered`.

`adaptive - adaptive_served_0` is what serving the buckets costs or gives;
`adaptive_served_0 - adaptive_held_0` what training with them does to the
rest of the model. The seeds' runs differ (the model's init) far more than a
bootstrap of the test examples says, so the differences are paired by seed,
with a 95% t interval over the seeds. One JSON line per seed, then the summary.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import warnings
from collections.abc import Callable
from typing import Any

import ctr_bench
import jax.numpy as jnp
import numpy as np

from adaptive_jax import data
from adaptive_jax.examples.ctr import choice, cli, run, train

SCORES = ("adaptive", "adaptive_served_0", "adaptive_held_0", "filtered")
T_975 = {
    1: 12.71,
    2: 4.30,
    3: 3.18,
    4: 2.78,
    5: 2.57,
    6: 2.45,
    7: 2.36,
    8: 2.31,
    9: 2.26,
}


def zero_buckets(tables: dict[str, Any]) -> dict[str, Any]:
    """The tables with every static bucket's value set to 0 (slots kept)."""
    return {
        name: state.replace(
            static=state.static.replace(values=jnp.zeros_like(state.static.values))
        )
        for name, state in tables.items()
    }


def _held_at_zero(step: Callable) -> Callable:
    """`step`, then the buckets reset to 0: rare ids read 0 in every step."""

    def held(params, opt_state, tables, *batch):
        params, opt_state, tables, loss = step(params, opt_state, tables, *batch)
        return params, opt_state, zero_buckets(tables), loss

    return held


def _holding_zero(step: Callable, state: train.TrainState) -> tuple:
    """`run.trained`'s `adjust`: the step held at 0, from 0 buckets."""
    zeroed = train.TrainState(state.params, state.opt_state, zero_buckets(state.tables))
    return _held_at_zero(step), zeroed


def data_directory(name: str) -> pathlib.Path:
    """Where `benchmarks/data/` builds the real set `name`."""
    return data.default_directory().parent / name


def probe(name: str, seed: int, learning_rate: float, init_stddev: float) -> dict:
    """The four test AUCs of one seed."""
    directory = data_directory(name)
    args = cli.parser().parse_args(
        ["--train", str(directory / "train.txt.gz"),
         "--test", str(directory / "test.txt.gz"),
         "--seed", str(seed), "--batch-size", "128", "--no-progress"]
    )  # fmt: skip
    files = run.dataset(args)
    found = run.survey(files, args)
    configs = ctr_bench.configurations()
    result: dict[str, Any] = {"data": name, "seed": seed}
    for family in ("adaptive", "filtered"):
        config = configs[ctr_bench.DEFAULT[family]]
        settings = ctr_bench._settings(config, found.train, learning_rate, init_stddev)
        holds = (False, True) if family == "adaptive" else (False,)
        for hold in holds:
            done = run.trained(
                family,
                settings,
                found,
                files,
                args,
                adjust=_holding_zero if hold else None,
            )
            key = "adaptive_held_0" if hold else family
            result[key] = choice.auc(done, done.state.tables, files, args)
            if family == "adaptive" and not hold:
                result["adaptive_served_0"] = choice.auc(
                    done, zero_buckets(done.state.tables), files, args
                )
    return result


def paired(rows: list[dict], first: str, second: str) -> dict[str, float]:
    """Mean of `first - second` over the seeds, with its 95% t interval."""
    diffs = [row[first] - row[second] for row in rows]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"mean": mean}
    half = T_975[len(diffs) - 1] * statistics.stdev(diffs) / np.sqrt(len(diffs))
    return {"mean": mean, "low": mean - half, "high": mean + half}


def over_seeds(
    description: str, probe: Callable[..., dict], seeds: list[int], argv: list[str]
) -> tuple[argparse.Namespace, list[dict]]:
    """A probe's command line (`--data`, `--seeds`, `--learning-rate`,
    `--init-stddev`, checked before any work) and its rows, one `probe(data,
    seed, learning_rate, init_stddev)` per seed, each printed as a JSON line."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="a real set in the cache")
    p.add_argument("--seeds", nargs="+", type=int, default=seeds)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--init-stddev", type=float, default=0.01)
    args = p.parse_args(argv)
    if len(args.seeds) - 1 > max(T_975):
        p.error(f"--seeds: at most {max(T_975) + 1}")
    for split in ("train", "test"):
        path = data_directory(args.data) / f"{split}.txt.gz"
        if not path.exists():
            p.error(f"--data {args.data}: {path} is missing; build the set first "
                    "(benchmarks/data/README.md)")  # fmt: skip
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MalformedLineWarning)
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        for seed in args.seeds:
            rows.append(probe(args.data, seed, args.learning_rate, args.init_stddev))
            print(json.dumps(rows[-1]), flush=True)
    return args, rows


def main(argv: list[str]) -> None:
    args, rows = over_seeds(__doc__.splitlines()[0], probe, [0, 1, 2, 3, 4, 5], argv)
    pairs = (
        ("adaptive", "filtered"),
        ("adaptive", "adaptive_served_0"),
        ("adaptive_served_0", "adaptive_held_0"),
        ("adaptive_held_0", "filtered"),
    )
    print(json.dumps({
        "data": args.data, "seeds": args.seeds, "learning_rate": args.learning_rate,
        "auc": {k: statistics.fmean(r[k] for r in rows) for k in SCORES},
        "paired": {f"{a} - {b}": paired(rows, a, b) for a, b in pairs},
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
