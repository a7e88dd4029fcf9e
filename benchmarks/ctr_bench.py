"""The claim of adaptive columns, measured with the CTR example's DeepFM.

Run: `python benchmarks/ctr_bench.py --data real` (the real Criteo slice that
`benchmarks/data/criteo_slice.py` builds), `--data NAME` (another real set
that `benchmarks/data/` builds into the cache: `frappe`, ...) or `--data
synthetic` (the generator calibrated to Criteo, one data set per seed), with
`[--seeds 0 1 2] [--out DIR] [--configs NAME ...] [--quick]`.

Protocol, the same for every family of columns (static, dynamic, filtered,
adaptive):

1. validation: the training split's last 15% (in stream order) is held out;
   each family's default configuration is trained on the first 85% at each
   learning rate and init scale of the grid and scored there; the best mean
   validation AUC over the seeds picks the family's learning rate and init,
   which all its configurations then use (the test split is never looked at);
2. test: every configuration is trained on the whole training split and
   scored on the test split, once per seed (the model's init; with synthetic
   data, also the data set);
3. summary: per configuration the mean and standard deviation over seeds of
   AUC, log loss, AUC on examples with late ids, training and export bytes;
   per configuration its AUC minus adaptive's (the default adaptive
   configuration), paired: a 95% interval from bootstrap resamples of the
   test examples and of the seeds (the same resamples for every
   configuration; `examples_low`/`examples_high`: the examples alone); the
   targets; a plot of AUC against export bytes with each family's frontier.

Configurations: `static/F` (hash buckets: a fraction F of the distinct ids),
`dynamic`, `filtered/T` (CounterFilter T), `adaptive/B/T` (B: "col" for one
bucket per column, or a fraction of the rare ids; T: the threshold), and the
ablations of the default adaptive one (migration "fitted"): `adaptive/deeprec`,
`adaptive/warm`, `adaptive/copy`, `adaptive/none` (migrations) and
`adaptive/evict100` (GlobalStepEvict(100)).

Each run is a JSON line on stdout and in `OUT/runs.jsonl`; its predictions go
to `OUT/predictions/`, so that a run already done is not done again when the
command is repeated (delete OUT to start over). The summary is the last line,
also in `OUT/summary.json`; `OUT/claim.md` holds its tables in Markdown and
`OUT/frontier.png` the plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import statistics
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from adaptive_jax import data, metrics
from adaptive_jax.examples.ctr import choice, cli, run, variants

FAMILIES = ("static", "dynamic", "filtered", "adaptive")
DEFAULT = {  # each family's default configuration: tuned, and the reference
    "static": "static/1",
    "dynamic": "dynamic",
    "filtered": "filtered/3",
    "adaptive": "adaptive/col/3",
}
LEARNING_RATES = (0.0025, 0.005, 0.01, 0.02, 0.04)
INIT_STDDEVS = (0.01, 0.05)
BOOTSTRAP_ROUNDS = 1000
REAL_SLICE = "criteo_slice"  # its directory in the user's cache


def configurations() -> dict[str, dict[str, Any]]:
    """Every configuration by name: its family and its settings' changes
    (sizes as fractions, resolved against the data by `_settings`)."""
    configs: dict[str, dict[str, Any]] = {}
    for fraction in ("1/64", "1/16", "1/4", "1"):
        configs[f"static/{fraction}"] = {"family": "static", "static": fraction}
    configs["dynamic"] = {"family": "dynamic"}
    for threshold in (2, 3, 5, 10):
        configs[f"filtered/{threshold}"] = {"family": "filtered", "t": threshold}
        configs[f"adaptive/col/{threshold}"] = {
            "family": "adaptive", "buckets": "col", "t": threshold,
        }  # fmt: skip
    for fraction in ("1/64", "1/16", "1/4"):
        configs[f"adaptive/{fraction}/3"] = {
            "family": "adaptive", "buckets": fraction, "t": 3,
        }  # fmt: skip
    for config in configs.values():
        config["sized"] = True  # a size or threshold of its family's frontier
    for migration in ("deeprec", "warm", "copy", "none"):
        configs[f"adaptive/{migration}"] = {
            "family": "adaptive", "buckets": "col", "t": 3, "migration": migration,
        }  # fmt: skip
    configs["adaptive/evict100"] = {
        "family": "adaptive", "buckets": "col", "t": 3, "steps_to_live": 100,
    }  # fmt: skip
    return configs


def _fraction(text: str) -> float:
    top, _, bottom = text.partition("/")
    return float(top) / float(bottom or 1)


def _settings(
    config: dict[str, Any], counts, learning_rate: float, init_stddev: float
) -> variants.Settings:
    """The example's settings for `config` on data of these `counts` (with a
    "budget", a fraction of the bytes of a row per id, every size from it)."""
    threshold = config.get("t", 3)
    changes: dict[str, Any] = {
        "learning_rate": learning_rate,
        "init_stddev": init_stddev,
        "filter_freq": threshold,
        "migration": config.get("migration", "fitted"),
        "steps_to_live": config.get("steps_to_live"),
        "pressure_evict": config.get("pressure_evict", False),
    }
    if "budget" in config:
        base = dataclasses.replace(variants.Settings(), **changes)
        per_id = variants.per_id_bytes(counts, base)
        changes["budget"] = max(1, math.floor(_fraction(config["budget"]) * per_id))
    if "static" in config:
        size = round(_fraction(config["static"]) * counts.distinct_total)
        changes["hash_bucket_size"] = max(len(counts.distinct), size)
    buckets = config.get("buckets", "col")
    if buckets != "col":
        rare = sum(counts.rare(k, threshold) for k in counts.distinct)
        size = round(_fraction(buckets) * rare)
        changes["adaptive_hash_bucket_size"] = max(len(counts.distinct), size)
    return dataclasses.replace(variants.Settings(), **changes)


@dataclasses.dataclass(frozen=True)
class Split:
    """The files of one data set: training (whole, and its two parts), test."""

    train: pathlib.Path
    fit: pathlib.Path
    valid: pathlib.Path
    test: pathlib.Path
    meta: dict[str, Any] | None


def _split_off_validation(train: pathlib.Path, directory: pathlib.Path) -> tuple:
    """The first 85% and the last 15% of the lines of `train`, written once."""
    fit, valid = directory / "fit.txt", directory / "valid.txt"
    if fit.exists() and valid.exists():
        return fit, valid
    return choice.held_out([train], directory)


def _datasets(args: argparse.Namespace) -> dict[int, Split]:
    """The data set of each seed: the real slice for all, or one synthetic
    set per seed."""
    cache = data.default_directory().parent
    if args.data != "synthetic":
        name = REAL_SLICE if args.data == "real" else args.data
        directory = args.real_dir or cache / name
        train, test = directory / "train.txt.gz", directory / "test.txt.gz"
        for path in (train, test):
            if not path.exists():
                sys.exit(
                    f"{path} is missing: build the data set first "
                    "(benchmarks/data/README.md)"
                )
        fit, valid = _split_off_validation(train, args.out / "validation")
        split = Split(train, fit, valid, test, None)
        return dict.fromkeys(args.seeds, split)
    splits = {}
    for seed in args.seeds:
        directory = cache / "bench" / f"calibrated_seed{seed}_{args.num_train}"
        files = data.ensure_dataset(
            directory, num_train=args.num_train, num_test=args.num_test, seed=seed
        )
        fit, valid = _split_off_validation(files.train, directory / "validation")
        splits[seed] = Split(files.train, fit, valid, files.test, files.metadata())
    return splits


def _options(train: pathlib.Path, test: pathlib.Path, seed: int, batch: int):
    return cli.parser().parse_args(
        ["--train", str(train), "--test", str(test), "--seed", str(seed),
         "--batch-size", str(batch), "--no-progress"]
    )  # fmt: skip


class Runs:
    """The runs done so far, in `OUT/runs.jsonl` and `OUT/predictions/`."""

    def __init__(self, out: pathlib.Path):
        self.path = out / "runs.jsonl"
        self.predictions = out / "predictions"
        self.predictions.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        self.surveys: dict[tuple, run.Survey] = {}  # scans, once per split
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                result = json.loads(line)
                self.done[result["run"]] = result

    def survey(self, split: Split, stage: str, seed: int, batch: int) -> tuple:
        """The example's options for `stage` ("tune" or "test") of `split`, and
        the scan of its files (once per split)."""
        train, test = (split.fit, split.valid) if stage == "tune" else (
            split.train, split.test
        )  # fmt: skip
        args = _options(train, test, seed, batch)
        if (train, test) not in self.surveys:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", data.MalformedLineWarning)
                warnings.simplefilter("ignore", data.UnusualValueWarning)
                self.surveys[train, test] = run.survey(run.dataset(args), args)
        return args, self.surveys[train, test]

    def get(
        self, name: str, family_config: dict, split: Split, stage: str, seed: int,
        learning_rate: float, init_stddev: float, batch: int,
    ) -> dict[str, Any]:  # fmt: skip
        """The result of one run, done now unless it was done before."""
        key = f"{stage}:{name}:seed{seed}:lr{learning_rate}:init{init_stddev}"
        stored = self.predictions / (key.replace(":", "_").replace("/", "-") + ".npz")
        if key in self.done and stored.exists():
            with np.load(stored) as arrays:
                return self.done[key] | dict(arrays)
        args, found = self.survey(split, stage, seed, batch)
        settings = _settings(family_config, found.train, learning_rate, init_stddev)
        result = run.run_variant(
            family_config["family"], settings, found, run.dataset(args), args
        )
        arrays = {
            "labels": result.pop("labels"),
            "probabilities": result.pop("probabilities"),
            "late": found.late[: result["test_examples"]],
        }
        result |= {"run": key, "name": name, "stage": stage, "seed": seed}
        result.pop("auc_by_late_ids", None)
        np.savez(stored, **arrays)
        with self.path.open("a") as stream:
            stream.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
        self.done[key] = result
        return result | arrays


def _spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def tune(runs: Runs, splits: dict[int, Split], args) -> dict[str, dict[str, float]]:
    """Each family's learning rate and init: the best mean validation AUC."""
    configs, chosen = configurations(), {}
    grid = [(lr, init) for lr in args.learning_rates for init in args.init_stddevs]
    for family in FAMILIES:
        name = DEFAULT[family]
        scores = {
            point: statistics.fmean(
                runs.get(
                    name,
                    configs[name],
                    splits[seed],
                    "tune",
                    seed,
                    *point,
                    args.batch_size,
                )["auc"]
                for seed in args.seeds
            )  # fmt: skip
            for point in grid
        }
        (lr, init), auc = max(scores.items(), key=lambda item: item[1])
        chosen[family] = {"learning_rate": lr, "init_stddev": init, "valid_auc": auc}
        print(json.dumps({"tuned": family, **chosen[family]}), flush=True)
    return chosen


def _paired(results: dict[str, dict[int, dict]], reference: str, seeds) -> dict:
    """Each configuration's AUC minus `reference`'s: the mean over seeds, and a
    95% bootstrap interval over both things left to chance, the test examples
    and the training runs: each round draws the examples (one draw for every
    seed where the seeds score the same examples, as on the real sets) and the
    seeds, both with replacement, and averages the drawn seeds' differences.
    `examples_low` and `examples_high`: over the examples alone, the seeds
    fixed; that one reads a difference between two trainings' paths as an
    effect (one change's difference moves from seed to seed by more than it
    allows: docs/claim.md), so the claims use the first."""
    names = list(results)
    labels = [results[reference][seed]["labels"] for seed in seeds]
    same_examples = all(np.array_equal(x, labels[0]) for x in labels)
    per_seed = []
    for seed, seed_labels in zip(seeds, labels, strict=True):
        scores = np.stack([results[n][seed]["probabilities"] for n in names])
        draws = 0 if same_examples else seed
        aucs = metrics.bootstrap_aucs(seed_labels, scores, BOOTSTRAP_ROUNDS, seed=draws)
        per_seed.append(aucs - aucs[:, [names.index(reference)]])
    diffs = np.stack(per_seed)  # [seeds, rounds, configs]
    rng = np.random.default_rng(len(seeds))
    drawn = rng.integers(0, len(seeds), size=(BOOTSTRAP_ROUNDS, len(seeds)))
    both = np.nanmean(diffs[drawn, np.arange(BOOTSTRAP_ROUNDS)[:, None]], axis=1)
    examples = np.nanmean(diffs, axis=0)  # [rounds, configs]

    def interval(rounds: np.ndarray, prefix: str = "") -> dict[str, float]:
        low, high = np.nanpercentile(rounds, [2.5, 97.5])
        return {f"{prefix}low": float(low), f"{prefix}high": float(high)}

    return {
        name: {
            "mean": statistics.fmean(
                results[name][s]["auc"] - results[reference][s]["auc"] for s in seeds
            ),
            **interval(both[:, i]),
            **interval(examples[:, i], "examples_"),
        }
        for i, name in enumerate(names)
    }


PAIRS = tuple((f"adaptive/col/{t}", f"filtered/{t}") for t in (2, 3, 5, 10)) + (
    ("adaptive/1/4/3", "static/1/4"),
    ("adaptive/col/3", "dynamic"),
)
"""Configurations compared head to head: an adaptive one and the plain one of
about its bytes (the same rows, or buckets of the same size)."""


def _pairs(results: dict[str, dict[int, dict]], seeds) -> list[dict[str, Any]]:
    """Each pair of `PAIRS` that ran: its AUC difference, paired by example
    over the bootstrap resamples, and its export bytes."""
    out = []
    for first, second in PAIRS:
        if first in results and second in results:
            diff = _paired({n: results[n] for n in (first, second)}, second, seeds)
            out.append({"pair": [first, second], **diff[first]})
    return out


def _late_auc_diffs(results, reference: str, seeds) -> dict[str, float]:
    """Each configuration's AUC on examples with late ids minus reference's."""
    return {
        name: statistics.fmean(
            by_seed[s]["auc_late_ids"] - results[reference][s]["auc_late_ids"]
            for s in seeds
        )
        for name, by_seed in results.items()
    }


def _at_bytes(points: list[tuple[float, float]], at: float) -> float | None:
    """The AUC of a family's sizes at `at` bytes, linear in log bytes; None
    outside the sizes measured."""
    points = sorted(points)
    xs = np.log([b for b, _ in points])
    if not xs[0] <= np.log(at) <= xs[-1]:
        return None
    return float(np.interp(np.log(at), xs, [a for _, a in points]))


def _sized_in(name: str, family: str) -> bool:
    """Whether configuration `name` is a size or threshold of `family`."""
    config = configurations()[name]
    return config["family"] == family and config.get("sized", False)


def targets(summary: dict[str, Any], paired: dict, late: dict) -> dict[str, Any]:
    """The issue's targets, each with its figure and whether it is met."""
    mean = {n: s["auc"]["mean"] for n, s in summary.items()}
    size = {n: s["export_bytes"]["mean"] for n, s in summary.items()}
    ada = DEFAULT["adaptive"]

    def family(f):
        return [(size[n], mean[n]) for n in summary if _sized_in(n, f)]

    static_at = _at_bytes(family("static"), size[ada])
    filtered_at = _at_bytes(family("filtered"), size[ada])
    out = {
        "export_vs_dynamic": size[ada] / size["dynamic"],
        "auc_vs_dynamic": -paired["dynamic"]["mean"],
        "auc_vs_static_at_bytes": None if static_at is None else mean[ada] - static_at,
        "auc_vs_filtered_at_bytes": (
            None if filtered_at is None else mean[ada] - filtered_at
        ),
        "late_vs_filtered": -late[DEFAULT["filtered"]],
        "late_vs_dynamic": -late["dynamic"],
    }
    goals = {
        "export_vs_dynamic": lambda v: v <= 0.20,
        "auc_vs_dynamic": lambda v: v >= -0.002,
        "auc_vs_static_at_bytes": lambda v: v >= 0.003,
        "auc_vs_filtered_at_bytes": lambda v: v >= 0.001,
        "late_vs_filtered": lambda v: v >= 0.0,
        "late_vs_dynamic": lambda v: v >= 0.0,
    }
    return {
        k: {"value": v, "met": None if v is None else bool(goals[k](v))}
        for k, v in out.items()
    }


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points that no smaller point beats: ascending bytes, rising AUC."""
    best, kept = -np.inf, []
    for size, auc in sorted(points):
        if auc > best:
            kept.append((size, auc))
            best = auc
    return kept


COLORS = {"static": "tab:gray", "dynamic": "tab:blue", "filtered": "tab:orange",
          "adaptive": "tab:green"}  # fmt: skip


def plot(path: pathlib.Path, summary: dict[str, Any], title: str) -> None:
    """AUC against export bytes: every configuration (mean over seeds, with its
    spread) and each family's frontier."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for family in FAMILIES:
        names = [n for n in summary if _sized_in(n, family)]
        points = [
            (summary[n]["export_bytes"]["mean"] / 1e6, summary[n]["auc"]["mean"])
            for n in names
        ]
        errors = [summary[n]["auc"]["std"] for n in names]
        xs, ys = zip(*points, strict=True)
        axis.errorbar(xs, ys, yerr=errors, fmt="o", color=COLORS[family],
                      alpha=0.5, markersize=4)  # fmt: skip
        edge = frontier(points)
        axis.plot(*zip(*edge, strict=True), "-", color=COLORS[family], label=family)
        for name, (x, y) in zip(names, points, strict=True):
            axis.annotate(name.partition("/")[2] or name, (x, y), fontsize=6,
                          textcoords="offset points", xytext=(3, 3))  # fmt: skip
    axis.set_xscale("log")
    axis.set_xlabel("serving export (MB)")
    save_plot(figure, axis, title, path, dpi=110)


def save_plot(figure: Any, axis: Any, title: str, path: pathlib.Path, dpi: int) -> None:
    """The plots' common finish (AUC on y, grid, legend, title), saved to `path`."""
    from matplotlib import pyplot as plt

    axis.set_ylabel("test AUC (mean over seeds; bars: std)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def markdown(payload: dict[str, Any]) -> str:
    """The claim's tables in Markdown: configurations, then the targets."""
    summary, paired = payload["summary"], payload["paired_vs_adaptive"]
    late = payload["late_vs_adaptive"]

    def cell(spread, scale=1.0, digits=4):
        if spread is None:
            return "n/a"
        return (
            f"{spread['mean'] / scale:.{digits}f} ± {spread['std'] / scale:.{digits}f}"
        )

    lines = [
        "| configuration | AUC | log loss | AUC late ids | train MB | export MB "
        "| AUC - adaptive (95% CI) | late - adaptive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        d = paired[name]
        lines.append(
            f"| {name} | {cell(s['auc'])} | {cell(s['log_loss'])} | "
            f"{cell(s['auc_late_ids'])} | {cell(s['param_bytes'], 1e6, 2)} | "
            f"{cell(s['export_bytes'], 1e6, 3)} | {d['mean']:+.4f} "
            f"[{d['low']:+.4f}, {d['high']:+.4f}] | {late[name]:+.4f} |"
        )
    lines += ["", "| head to head | AUC difference (95% CI) |", "|---|---|"]
    for pair in payload["pairs"]:
        first, second = pair["pair"]
        lines.append(
            f"| {first} - {second} | {pair['mean']:+.4f} "
            f"[{pair['low']:+.4f}, {pair['high']:+.4f}] |"
        )
    return "\n".join(lines + target_rows(payload["targets"])) + "\n"


def target_rows(targets: dict[str, dict[str, Any]]) -> list[str]:
    """The targets as a Markdown table: value (with its interval, if any), met or
    not, and what it is measured against (if said)."""
    lines = ["", "| target | value | met? |", "|---|---|---|"]
    for name, t in targets.items():
        value = "n/a" if t["value"] is None else f"{t['value']:+.4f}"
        if t.get("interval"):
            value += f" [{t['interval'][0]:+.4f}, {t['interval'][1]:+.4f}]"
        met = {True: "**met**", False: "**missed**", None: "not measurable"}[t["met"]]
        against = f" (against {t['against']})" if t.get("against") else ""
        lines.append(f"| {name}{against} | {value} | {met} |")
    return lines


def main(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default="real",
        help='"real" (the Criteo slice), "synthetic", or the name of a real set '
        "built into the cache (benchmarks/data/README.md)",
    )
    p.add_argument("--real-dir", type=pathlib.Path, help="the real set's files")
    p.add_argument("--num-train", type=int, default=data.synthetic.DEFAULT_TRAIN)
    p.add_argument("--num-test", type=int, default=data.synthetic.DEFAULT_TEST)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", help="a subset of the configurations")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rates", nargs="+", type=float,
                   default=list(LEARNING_RATES), help="the tuning grid's")  # fmt: skip
    p.add_argument("--init-stddevs", nargs="+", type=float,
                   default=list(INIT_STDDEVS), help="the tuning grid's")  # fmt: skip
    p.add_argument("--out", type=pathlib.Path, help="default: claim_out/DATA")
    p.add_argument(
        "--quick", action="store_true", help="one seed, a small grid, 4 configurations"
    )
    args = p.parse_args(argv)
    args.out = args.out or pathlib.Path("claim_out") / args.data
    args.batch_size = args.batch_size or (1024 if args.data == "synthetic" else 128)
    configs = configurations()
    names = args.configs or list(configs)
    if args.quick:
        args.seeds, names = args.seeds[:1], list(DEFAULT.values())
        args.learning_rates, args.init_stddevs = (0.005, 0.02), (0.01,)
    unknown = sorted(set(names) - set(configs))
    if unknown:
        p.error(f"unknown configurations {unknown}; they are {list(configs)}")
    names = list(dict.fromkeys(list(DEFAULT.values()) + names))
    args.out.mkdir(parents=True, exist_ok=True)
    runs, splits = Runs(args.out), _datasets(args)
    tuned = tune(runs, splits, args)
    results: dict[str, dict[int, dict]] = {}
    for name in names:
        point = tuned[configs[name]["family"]]
        for seed in args.seeds:
            results.setdefault(name, {})[seed] = runs.get(
                name, configs[name], splits[seed], "test", seed,
                point["learning_rate"], point["init_stddev"], args.batch_size,
            )  # fmt: skip
    fields = ("auc", "log_loss", "auc_late_ids", "param_bytes", "export_bytes")
    summary = {
        name: {f: _spread([r[f] for r in by_seed.values()]) for f in fields}
        for name, by_seed in results.items()
    }
    paired = _paired(results, DEFAULT["adaptive"], args.seeds)
    late = _late_auc_diffs(results, DEFAULT["adaptive"], args.seeds)
    payload = {
        "pairs": _pairs(results, args.seeds),
        "data": args.data,
        "seeds": args.seeds,
        "grid": {
            "learning_rates": args.learning_rates,
            "init_stddevs": args.init_stddevs,
        },
        "tuned": tuned,
        "summary": summary,
        "paired_vs_adaptive": paired,
        "late_vs_adaptive": late,
        "targets": targets(summary, paired, late),
    }
    (args.out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    (args.out / "claim.md").write_text(markdown(payload))
    title = f"DeepFM, one pass, {args.data} data, seeds {args.seeds}"
    plot(args.out / "frontier.png", summary, title)
    print(markdown(payload))
    print(json.dumps(payload))


if __name__ == "__main__":
    main(sys.argv[1:])
