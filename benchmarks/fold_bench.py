"""The claim's comparisons over the five splits of a randomly split real set.

Run: `python benchmarks/fold_bench.py --data lastfm --ratings
ratings_final.txt [--configs NAME ...] [--learning-rate LR] [--seeds 0]
[--out DIR]` with the source file that `benchmarks/data/README.md` names for
`lastfm` or `bookcrossing` (their converters split the lines by a hash into
five folds; the default split tests fold 0).

A paired bootstrap interval over test examples and seeds (`ctr_bench.py`)
holds the test split's sampling noise and the runs', not the noise of which
lines trained: on a set of 34K lines, two splits of the same lines can
disagree on the sign of a difference. Here every configuration trains and
tests on each of the five splits, with the same settings (`--learning-rate`,
from `ctr_bench.py`'s tuning), and each configuration's AUC minus the
reference's (`--reference`, default the adaptive column) is summarised over
the folds: the mean, and a 95% interval from Student's t with 4 degrees of
freedom, the seeds' AUCs averaged within a fold. JSON lines on stdout, the
summary last; runs are kept in `OUT/runs.jsonl` as `ctr_bench.py` keeps them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
from collections.abc import Sequence

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "data"))
import _sources  # noqa: E402
import bookcrossing  # noqa: E402
import ctr_bench  # noqa: E402

FOLDS = bookcrossing.TEST_EVERY
T_975_4 = 2.776  # Student's t, 97.5th percentile, 4 degrees of freedom


def build_folds(ratings: pathlib.Path, out: pathlib.Path) -> list[ctr_bench.Split]:
    """The five splits of the source's lines, written once under `out`."""
    rows = bookcrossing.read(ratings)
    splits = []
    for fold in range(FOLDS):
        directory = out / f"fold{fold}"
        if not (directory / "test.txt.gz").exists():
            _sources.write_splits(
                directory, bookcrossing.split(rows, fold), {"test_fold": fold}
            )
        train, test = directory / "train.txt.gz", directory / "test.txt.gz"
        splits.append(ctr_bench.Split(train, train, test, test, None))
    return splits


def interval(differences: list[float]) -> dict[str, float]:
    """Mean of the folds' differences and its 95% t interval."""
    mean = statistics.fmean(differences)
    half = T_975_4 * statistics.stdev(differences) / len(differences) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half}


def main(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("lastfm", "bookcrossing"), required=True)
    p.add_argument("--ratings", type=pathlib.Path, required=True)
    p.add_argument(
        "--configs",
        nargs="+",
        default=["adaptive/col/3", "adaptive/none", "filtered/3"],
    )
    p.add_argument("--reference", default="adaptive/col/3")
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--init-stddev", type=float, default=0.01)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=pathlib.Path)
    args = p.parse_args(argv)
    args.out = args.out or pathlib.Path("claim_out") / f"{args.data}_folds"
    configs = ctr_bench.configurations()
    names = list(dict.fromkeys([args.reference, *args.configs]))
    unknown = sorted(set(names) - set(configs))
    if unknown:
        p.error(f"unknown configurations {unknown}; they are {list(configs)}")
    splits = build_folds(args.ratings, args.out)
    runs = ctr_bench.Runs(args.out)
    auc = {name: [] for name in names}  # per fold, the seeds' mean
    for fold, split in enumerate(splits):
        for name in names:
            results = [
                runs.get(
                    f"fold{fold}/{name}", configs[name], split, "test", seed,
                    args.learning_rate, args.init_stddev, args.batch_size,
                )["auc"]
                for seed in args.seeds
            ]  # fmt: skip
            auc[name].append(statistics.fmean(results))
    summary = {
        "data": args.data,
        "learning_rate": args.learning_rate,
        "seeds": args.seeds,
        "auc_by_fold": auc,
        "minus_reference": {
            name: interval(
                [a - r for a, r in zip(auc[name], auc[args.reference], strict=True)]
            )
            for name in names
            if name != args.reference
        },
        "reference": args.reference,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
