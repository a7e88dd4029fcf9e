"""AUC at a byte budget: each family of columns sized to the same bytes.

Run: `python benchmarks/budget_bench.py --data real` (or `synthetic`, or the
name of another real set built into the cache, as `ctr_bench.py` takes them),
with `[--seeds 0 1 2] [--fractions 1/4 ...] [--learning-rate 0.01]
[--init-stddev 0.01] [--out DIR] [--quick]`.

A budget is a fraction (`FRACTIONS`: 1/4 to 1/1024) of the training bytes of
a row per distinct training id (the CTR example's "dynamic" variant sized by
the data: `variants.per_id_bytes`). At each budget the CTR example sizes four
families with `feature_column.size_columns` (its `--budget`):

- `adaptive`: rows for the frequent ids, at the lowest threshold (at least
  3) whose rows fit, and one bucket per feature for the rest;
- `static`: every byte in hash buckets;
- `filtered`: every byte in rows behind `CounterFilter`, the lowest
  threshold (at least 3) whose rows fit; the others read 0;
- `dynamic`: rows for as many ids as fit, no filter, with `PressureEvict`
  (the stalest rows go when the table is fuller than 95%) so that new ids
  find room instead of reading the default values.

Each is trained for one pass on the whole training split and its serving
export scored on the test split, per seed (`ctr_bench.Runs`: a run already
done is not done again), with the same FTRL learning rate and init for every
family (no tuning, to keep the compute small; 0.01 by default: what the
claim's tuning chose for every family on frappe, lastfm, amazon_magazine and
bookcrossing; on the Criteo slice it chose 0.005, 0.0025 for adaptive). The
per-id table
(`per-id`) is the reference the budgets are fractions of. Per budget, every
family's AUC minus adaptive's is paired with a 95% bootstrap interval over
the test examples and the seeds (`ctr_bench._paired`).

Each run is a JSON line on stdout and in `OUT/runs.jsonl`; the summary is the
last line, also in `OUT/summary.json`; `OUT/budget.md` holds its tables and
`OUT/budget.png` the plot of AUC against the budget.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ctr_bench  # noqa: E402

from adaptive_jax import data  # noqa: E402
from adaptive_jax.examples.ctr import variants  # noqa: E402

FRACTIONS = ("1/4", "1/16", "1/64", "1/256", "1/1024")
QUICK_FRACTIONS = ("1/4", "1/64")
FAMILIES = ("adaptive", "static", "filtered", "dynamic")
PER_ID = "per-id"  # a row per distinct training id, sized by the data
TARGET_FRACTIONS = ("1/4", "1/16", "1/64", "1/256")  # adaptive >= the others
NEAR_PER_ID = ("1/16", -0.002)  # adaptive within 0.002 AUC of a row per id


def name_of(family: str, fraction: str) -> str:
    return f"{family}@{fraction}"


def configurations(fractions: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every configuration by name: the per-id table, and each family at each
    budget fraction."""
    configs: dict[str, dict[str, Any]] = {PER_ID: {"family": "dynamic"}}
    for fraction in fractions:
        for family in FAMILIES:
            configs[name_of(family, fraction)] = {
                "family": family,
                "budget": fraction,
                "pressure_evict": family == "dynamic",
            }
    return configs


def too_small(config: dict[str, Any], counts, args) -> str | None:
    """Why `config`'s budget cannot hold its family's least state, or None."""
    if "budget" not in config:
        return None
    settings = ctr_bench._settings(config, counts, args.learning_rate, args.init_stddev)
    try:
        variants.sizing(config["family"], counts, settings)
    except ValueError as error:
        return str(error)
    return None


def _spread(results: dict[int, dict], field: str) -> dict[str, float] | None:
    return ctr_bench._spread([r.get(field) for r in results.values()])


def summarize(
    results: dict[str, dict[int, dict]], seeds, fractions: Sequence[str]
) -> dict[str, Any]:
    """Per configuration its spreads over seeds (AUC, log loss, bytes) and the
    sizing; per budget each family's AUC minus adaptive's, paired."""
    summary = {}
    for name, by_seed in results.items():
        first = next(iter(by_seed.values()))
        sizing = first.get("sizing", {})
        summary[name] = {
            **{
                f: _spread(by_seed, f)
                for f in ("auc", "log_loss", "param_bytes", "export_bytes")
            },
            "budget": sizing.get("budget"),
            "filter_freq": sizing.get("filter_freq"),
            "hash_bucket_size": sizing.get("hash_bucket_size"),
            "capacity": sizing.get("capacity"),
        }
    paired = {}
    for fraction in fractions:
        reference = name_of("adaptive", fraction)
        if reference not in results:
            continue
        names = [name_of(f, fraction) for f in FAMILIES] + [PER_ID]
        present = {n: results[n] for n in names if n in results}
        paired[fraction] = ctr_bench._paired(present, reference, seeds)
    return {"summary": summary, "paired_vs_adaptive": paired}


def targets(payload: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets: at each budget of `TARGET_FRACTIONS`, adaptive's
    mean AUC at least each other family's; at `NEAR_PER_ID`'s budget,
    adaptive's AUC minus the per-id table's at least its bound."""
    paired, out = payload["paired_vs_adaptive"], {}
    for fraction in TARGET_FRACTIONS:
        if fraction not in paired:
            continue
        others = {
            n: d["mean"] for n, d in paired[fraction].items()
            if n != name_of("adaptive", fraction) and n != PER_ID
        }  # fmt: skip
        best = max(others, key=others.get, default=None)  # the best other family
        diff = paired[fraction].get(best, {"mean": None})
        out[f"adaptive_best_at_{fraction}"] = {
            "value": None if best is None else -diff["mean"],
            "against": best,
            "interval": None if best is None else [-diff["high"], -diff["low"]],
            "met": None if best is None else bool(diff["mean"] <= 0.0),
        }
    fraction, bound = NEAR_PER_ID
    if fraction in paired and PER_ID in paired[fraction]:
        diff = paired[fraction][PER_ID]
        out[f"adaptive_vs_per_id_at_{fraction}"] = {
            "value": -diff["mean"],
            "interval": [-diff["high"], -diff["low"]],
            "met": bool(-diff["mean"] >= bound),
        }
    return out


def markdown(payload: dict[str, Any]) -> str:
    """The budget table (budget x family), then the targets."""
    summary, paired = payload["summary"], payload["paired_vs_adaptive"]
    lines = [
        "| budget | family | budget bytes | AUC | AUC - adaptive (95% CI) "
        "| train bytes used | export bytes | threshold | buckets | rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(fraction: str, family: str, name: str, diff) -> str:
        s = summary[name]
        auc = f"{s['auc']['mean']:.4f} ± {s['auc']['std']:.4f}"
        delta = "" if diff is None else (
            f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"
        )  # fmt: skip
        sized = [s[k] for k in ("filter_freq", "hash_bucket_size", "capacity")]
        sized = ["-" if v in (None, 0) else f"{v:,}" for v in sized]
        budget = "-" if s["budget"] is None else f"{s['budget']:,}"
        return (
            f"| {fraction} | {family} | {budget} | {auc} | {delta} | "
            f"{s['param_bytes']['mean']:,.0f} | {s['export_bytes']['mean']:,.0f} "
            f"| {' | '.join(sized)} |"
        )

    if PER_ID in summary:
        lines.append(row("1", PER_ID, PER_ID, None))
    for fraction in payload["fractions"]:
        for family in FAMILIES:
            name = name_of(family, fraction)
            if name in summary:
                diff = paired.get(fraction, {}).get(name)
                lines.append(row(fraction, family, name, diff))
            elif name in payload["skipped"]:
                least = payload["skipped"][name].rpartition("give at least ")[2]
                lines.append(
                    f"| {fraction} | {family} | does not fit: its least state is "
                    f"{least} B | | | | | | | |"
                )
    return "\n".join(lines + ctr_bench.target_rows(payload["targets"])) + "\n"


def plot(path: pathlib.Path, payload: dict[str, Any], title: str) -> None:
    """AUC against the budget (a fraction of a row per id's bytes, log x),
    a line per family with its spread over seeds; the per-id table dashed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    summary = payload["summary"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for family in FAMILIES:
        points = [
            (ctr_bench._fraction(f), summary[name_of(family, f)]["auc"])
            for f in payload["fractions"]
            if name_of(family, f) in summary
        ]
        if not points:
            continue
        xs = [x for x, _ in points]
        axis.errorbar(
            xs, [a["mean"] for _, a in points], yerr=[a["std"] for _, a in points],
            fmt="o-", color=ctr_bench.COLORS[family], label=family, markersize=4,
            capsize=2,
        )  # fmt: skip
    if PER_ID in summary:
        axis.axhline(summary[PER_ID]["auc"]["mean"], color="black", linestyle="--",
                     linewidth=1, label="a row per id (1)")  # fmt: skip
    axis.set_xscale("log", base=2)
    ticks = [*payload["fractions"], "1"]
    axis.set_xticks([ctr_bench._fraction(f) for f in ticks], ticks)
    axis.minorticks_off()
    axis.set_xlabel("budget: fraction of a row per id's training bytes")
    ctr_bench.save_plot(figure, axis, title, path, dpi=90)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="real",
                   help='"real" (the Criteo slice), "synthetic", or the name of '
                   "a real set built into the cache")  # fmt: skip
    p.add_argument("--real-dir", type=pathlib.Path, help="the real set's files")
    p.add_argument("--num-train", type=int, default=data.synthetic.DEFAULT_TRAIN)
    p.add_argument("--num-test", type=int, default=data.synthetic.DEFAULT_TEST)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--fractions", nargs="+", default=list(FRACTIONS),
                   help="budgets, fractions of a row per id's bytes")  # fmt: skip
    p.add_argument(
        "--learning-rate",
        type=float,
        default=0.01,
        help="FTRL's on the tables, every family (default: 0.01)",
    )
    p.add_argument("--init-stddev", type=float, default=0.01)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", type=pathlib.Path, help="default: budget_out/DATA")
    quick = " ".join(QUICK_FRACTIONS)
    p.add_argument("--quick", action="store_true",
                   help=f"one seed, the budgets {quick}")  # fmt: skip
    args = p.parse_args(argv)
    for fraction in args.fractions:
        try:
            value = ctr_bench._fraction(fraction)
        except ValueError:
            value = 0.0
        if not 0.0 < value <= 1.0:
            p.error(f"--fractions: {fraction!r} is not a fraction like 1/16 in (0, 1]")
    args.out = args.out or pathlib.Path("budget_out") / args.data
    args.batch_size = args.batch_size or (1024 if args.data == "synthetic" else 128)
    if args.quick:
        args.seeds, args.fractions = args.seeds[:1], list(QUICK_FRACTIONS)
    return args


def main(argv: Sequence[str]) -> dict[str, Any]:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, splits = ctr_bench.Runs(args.out), ctr_bench._datasets(args)
    results: dict[str, dict[int, dict]] = {}
    skipped: dict[str, str] = {}
    for name, config in configurations(args.fractions).items():
        for seed in args.seeds:
            _, found = runs.survey(splits[seed], "test", seed, args.batch_size)
            why = too_small(config, found.train, args)
            if why is not None:
                skipped[name] = why
                print(json.dumps({"skipped": name, "seed": seed, "why": why}))
                continue
            results.setdefault(name, {})[seed] = runs.get(
                name, config, splits[seed], "test", seed, args.learning_rate,
                args.init_stddev, args.batch_size,
            )  # fmt: skip
    for name in skipped:  # a budget too small for one seed's data: for all
        results.pop(name, None)
    payload = {
        "data": args.data,
        "seeds": args.seeds,
        "fractions": args.fractions,
        "learning_rate": args.learning_rate,
        "init_stddev": args.init_stddev,
        "batch_size": args.batch_size,
        **summarize(results, args.seeds, args.fractions),
        "skipped": skipped,
    }
    payload["targets"] = targets(payload)
    (args.out / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    (args.out / "budget.md").write_text(markdown(payload))
    title = (
        f"DeepFM, one pass, {args.data} data, seeds {args.seeds}, "
        f"lr {args.learning_rate}"
    )
    plot(args.out / "budget.png", payload, title)
    print(markdown(payload))
    print(json.dumps(payload))
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
