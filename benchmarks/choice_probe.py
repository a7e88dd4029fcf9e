"""Does a validation split choose the fields' buckets as the test split would?

Run: `python benchmarks/choice_probe.py --data NAME [--seeds 0 1 2]
[--learning-rate 0.01] [--init-stddev 0.01]`, NAME a real set that
`benchmarks/data/` builds into the cache.

Per seed: the CTR example's `--rare-zero auto` (`choice.choose_held_out`)
picks, on the training split's first 85% and scored on its last 15% (as
`ctr_bench.py` tunes), which fields
of the adaptive variant keep their buckets: all, none (the filtered
variant), or all but those whose buckets served as 0 raise the validation
AUC. Then the adaptive, filtered and chosen variants are trained on the whole
training split and scored on the test split (the chosen one is the adaptive
or the filtered run when it is one of them). One JSON line per seed, then
the differences paired by seed with a 95% t interval.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys

import bucket_probe
import ctr_bench

from adaptive_jax.examples.ctr import choice, run

VARIANTS = ("adaptive", "filtered", "chosen")


def probe(name: str, seed: int, learning_rate: float, init_stddev: float) -> dict:
    """The choice of one seed on validation, and the three test AUCs."""
    directory = bucket_probe.data_directory(name)
    config = ctr_bench.configurations()[ctr_bench.DEFAULT["adaptive"]]
    args = ctr_bench._options(
        directory / "train.txt.gz", directory / "test.txt.gz", seed, 128
    )
    files = run.dataset(args)
    found = run.survey(files, args)
    settings = ctr_bench._settings(config, found.train, learning_rate, init_stddev)
    chosen = choice.choose_held_out(settings, files, args)
    test = {}
    for variant in ("adaptive", "filtered"):
        done = run.trained(variant, settings, found, files, args)
        test[variant] = choice.auc(done, done.state.tables, files, args)
    names = {c[0]: n for n, c in chosen.candidates.items()}
    name_of = names.get(chosen.rare_zero, "buckets")  # unscored: every bucket
    if name_of == "buckets":
        test["chosen"] = test["adaptive"]
    elif name_of == "none":
        test["chosen"] = test["filtered"]
    else:
        picked = dataclasses.replace(settings, rare_zero=chosen.rare_zero)
        done = run.trained("adaptive", picked, found, files, args)
        test["chosen"] = choice.auc(done, done.state.tables, files, args)
    return {
        "data": name,
        "seed": seed,
        "choice": name_of,
        "rare_zero": list(chosen.rare_zero),
        "valid": {n: c[1] for n, c in chosen.candidates.items()},
        "gains": chosen.gains,
        **test,
    }


def main(argv: list[str]) -> None:
    args, rows = bucket_probe.over_seeds(
        __doc__.splitlines()[0], probe, [0, 1, 2], argv
    )
    pairs = (("chosen", "filtered"), ("chosen", "adaptive"), ("adaptive", "filtered"))
    print(json.dumps({
        "data": args.data, "seeds": args.seeds, "learning_rate": args.learning_rate,
        "choices": [r["choice"] for r in rows],
        "auc": {k: statistics.fmean(r[k] for r in rows) for k in VARIANTS},
        "paired": {f"{a} - {b}": bucket_probe.paired(rows, a, b) for a, b in pairs},
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
