"""Fits the synthetic Criteo generator to real click logs.

Run: `python benchmarks/data/calibrate.py [TRAIN ...] [--examples 9999]`
(default: the real slice's `train.txt.gz`, see README.md). Prints, as JSON,
what `adaptive_jax.data.SyntheticSpec` takes from real data, each value with
the figure it was fitted to:

- per column, the missing rate, and the power-law exponent `s` of its ids'
  ranks over the column's published Kaggle cardinality
  (`data._spec.KAGGLE_CARDINALITIES`): the `s` whose expected number of
  distinct ids, in as many draws as the slice has values, equals the number
  the slice holds (`E[distinct] = sum_r 1 - (1 - p_r)**n`, `p_r ~ r**-s`); a
  column that shows every one of its values (C9) is fitted to the share
  of its most frequent value instead;
- the integer columns' missing rates;
- the click rate (`SyntheticSpec.click_rate`: the generator solves its
  logit's constant per seed to draw it).

The fit uses the first `--examples` lines: a contiguous run of the stream, as
the generator draws one (the slice's later rows are samples spread over days).
It also reports, per column, the share of distinct ids seen once, in the slice
and in a simulated draw of the fitted law: a check, not a target.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from adaptive_jax import data  # noqa: E402
from adaptive_jax.data import _click_model, _spec  # noqa: E402


def power_law(vocabulary: int, exponent: float) -> np.ndarray:
    """`p_r ~ r**-s` for r = 1..vocabulary (the generator's, up to its
    discretisation of a continuous law)."""
    weights = np.arange(1, vocabulary + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def expected_distinct(vocabulary: int, exponent: float, draws: int) -> float:
    p = power_law(vocabulary, exponent)
    return float(np.sum(-np.expm1(draws * np.log1p(-p))))


def fit_exponent(vocabulary: int, distinct: int, draws: int, top_share: float):
    """`(s, what it matched)`: by distinct ids, or by the top value's share
    when the slice shows the whole vocabulary."""
    low, high = 0.01, 5.0
    if distinct >= vocabulary:

        def gap(s):
            return power_law(vocabulary, s)[0] - top_share  # rises with s

        target = "top_share"
    else:

        def gap(s):
            return distinct - expected_distinct(vocabulary, s, draws)  # rises with s

        target = "distinct"
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if gap(middle) < 0 else (low, middle)
    return (low + high) / 2, target


def simulated_once_share(vocabulary: int, exponent: float, draws: int) -> float:
    rng = np.random.default_rng(0)
    ranks = _click_model.draw_ranks(rng, vocabulary, exponent, draws)
    _, counts = np.unique(ranks, return_counts=True)
    return float(np.mean(counts == 1))


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train", nargs="*", type=pathlib.Path)
    p.add_argument("--examples", type=int, default=9_999)
    args = p.parse_args(argv)
    paths = args.train or [data.default_directory().parent / "criteo_slice" /
                           "train.txt.gz"]  # fmt: skip
    batch = next(iter(data.CriteoReader(paths, batch_size=args.examples)))
    n = batch.size
    columns = {}
    for key, vocabulary in zip(
        data.CATEGORICAL_COLUMNS, _spec.KAGGLE_CARDINALITIES, strict=True
    ):
        values = batch.categorical[key][:, 0]
        present = values[values != ""]
        _, counts = np.unique(present, return_counts=True)
        top = counts.max() / present.size if present.size else 1.0
        exponent, target = fit_exponent(vocabulary, counts.size, present.size, top)
        columns[key] = {
            "cardinality": vocabulary,
            "missing_rate": round(1 - present.size / n, 4),
            "distinct_in_slice": int(counts.size),
            "exponent": round(exponent, 4),
            "fitted_to": target,
            "once_share_slice": round(float(np.mean(counts == 1)), 4),
            "once_share_fitted": round(
                simulated_once_share(vocabulary, exponent, present.size), 4
            ),
        }
    dense_missing = [round(float(m), 4) for m in batch.dense_missing.mean(axis=0)]
    print(json.dumps({
        "examples": n, "click_rate": round(float(batch.labels.mean()), 4),
        "dense_missing_rates": dense_missing, "columns": columns,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
