"""The command line of the CTR example: data, variants, sweep, outputs.

`main(argv)` checks every input first (the files exist, hold examples of both
classes, the outputs can be written), so that a run that starts also ends; then
it trains and evaluates each variant and the static sweep on the same data, and
writes the table, the JSON and the plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from adaptive_jax import data, export
from adaptive_jax.examples.ctr import model as model_lib
from adaptive_jax.examples.ctr import report, train, variants

DEFAULT_SWEEP = (2**15, 2**16, 2**17)


class UsageError(ValueError):
    """A command-line input that the run cannot use; printed, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The files of a run and what is known of them.

    Attributes:
      train: the training files, in order.
      test: the test files, in order.
      late: `[test examples] uint8`, how many ids first seen late in the
        stream each test example holds, where the data is synthetic (its
        ground truth); else None.
      meta: the synthetic data's metadata, or None.
    """

    train: tuple[pathlib.Path, ...]
    test: tuple[pathlib.Path, ...]
    late: np.ndarray | None
    meta: dict[str, Any] | None


def parser() -> argparse.ArgumentParser:
    """The options of `python -m adaptive_jax.examples.ctr`."""
    p = argparse.ArgumentParser(
        prog="python -m adaptive_jax.examples.ctr",
        description=(
            "Train a DeepFM click model for one pass with four kinds of embedding "
            "columns (static, dynamic, filtered, adaptive) and a sweep of static "
            "table sizes, on the same Criteo-format data; print AUC, log loss and "
            "bytes, and write them as JSON and a plot."
        ),
    )
    d = p.add_argument_group("data (default: the synthetic Criteo set)")
    d.add_argument("--train", nargs="+", type=pathlib.Path, metavar="PATH",
                   help="your Criteo-format training files or directories "
                   "(text or gzip); needs --test")  # fmt: skip
    d.add_argument("--test", nargs="+", type=pathlib.Path, metavar="PATH",
                   help="your Criteo-format test files or directories")  # fmt: skip
    d.add_argument("--data-dir", type=pathlib.Path,
                   help="where the synthetic set is kept (default: "
                   "$ADAPTIVE_JAX_DATA or the user's cache)")  # fmt: skip
    d.add_argument("--num-train", type=int, default=data.synthetic.DEFAULT_TRAIN)
    d.add_argument("--num-test", type=int, default=data.synthetic.DEFAULT_TEST)
    d.add_argument("--data-seed", type=int, default=data.synthetic.DEFAULT_SEED)
    d.add_argument("--train-limit", type=int, help="train on the first N examples")
    d.add_argument("--test-limit", type=int, help="test on the first N examples")
    m = p.add_argument_group("model and columns")
    m.add_argument("--variants", nargs="+", choices=variants.VARIANTS,
                   default=list(variants.VARIANTS))  # fmt: skip
    m.add_argument("--sweep", nargs="*", type=int, default=list(DEFAULT_SWEEP),
                   metavar="BUCKETS", help="more hash_bucket_size values of the "
                   "static variant, for the plot's line (none: no sweep)")  # fmt: skip
    defaults = variants.Settings()
    for field in dataclasses.fields(variants.Settings):
        value = getattr(defaults, field.name)
        extra = {"choices": variants.MIGRATIONS} if field.name == "migration" else {}
        m.add_argument("--" + field.name.replace("_", "-"), type=type(value),
                       default=value, help="default: %(default)s (see "
                       "variants.Settings)", **extra)  # fmt: skip
    m.add_argument("--batch-size", type=int, default=1024)
    m.add_argument("--seed", type=int, default=0, help="of the model's init")
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("ctr_out"))
    o.add_argument("--json", type=pathlib.Path, help="default: OUTPUT_DIR/ctr.json")
    o.add_argument("--plot", type=pathlib.Path, help="default: OUTPUT_DIR/ctr.png")
    o.add_argument("--no-plot", action="store_true")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def dataset(args: argparse.Namespace) -> Dataset:
    """The run's files: the user's, or the synthetic set (made if needed).

    Raises:
      UsageError: only one of --train and --test, or a bad size.
      FileNotFoundError, ValueError: a path that does not exist, or a directory
        without data files (from `data.data_files`).
    """
    if (args.train is None) != (args.test is None):
        raise UsageError("give both --train and --test, or neither")
    if args.train is not None:
        return Dataset(
            data.data_files(args.train), data.data_files(args.test), None, None
        )
    files = data.ensure_dataset(
        args.data_dir,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.data_seed,
    )
    late = files.ground_truth("test").late_ids
    return Dataset((files.train,), (files.test,), late, files.metadata())


def _reader(files, args, *, test: bool) -> data.CriteoReader:
    return data.CriteoReader(
        files,
        batch_size=args.batch_size,
        drop_remainder=not test,  # every step has the same shapes
        limit=args.test_limit if test else args.train_limit,
    )


def _check(args: argparse.Namespace) -> None:
    """Rejects option values that would fail later, before any work."""
    for name in ("batch_size", "num_train", "num_test"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("train_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if any(buckets < 1 for buckets in args.sweep):
        raise UsageError("--sweep sizes must be >= 1")


def run_variant(
    variant: str,
    settings: variants.Settings,
    counts: variants.IdCounts,
    files: Dataset,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Trains one variant for a pass, exports it and scores the export."""
    columns = variants.columns(variant, counts, settings)
    model = model_lib.DeepFM(settings.dimension)
    optimizers = train.optimizers(settings.learning_rate)
    state = train.init(
        columns, model, optimizers, jax.random.key(args.seed), args.batch_size
    )
    step = train.make_step(columns, model, optimizers, settings.evict_every)
    state, timing = train.train(
        state,
        step,
        _reader(files.train, args, test=False),
        columns,
        total=counts.examples // args.batch_size,
        progress=not args.no_progress,
        description=f"{variant:>8}",
    )
    exported = export.export(state.tables, columns)
    labels, probabilities = train.predict(
        exported, model, state.params, _reader(files.test, args, test=True)
    )
    late = None if files.late is None else files.late[: labels.size]
    return {
        "variant": variant,
        **train.scores(labels, probabilities, late),
        **train.sizes(state.tables, exported),
        "examples_per_s": timing["examples_per_s"],
        "train_seconds": timing["seconds"],
        "train_examples": timing["examples"],
        "test_examples": int(labels.size),
        "settings": _settings_of(variant, settings),
    }


def _settings_of(variant: str, settings: variants.Settings) -> dict[str, Any]:
    """The settings that matter to `variant`."""
    relevant = {
        "static": ("hash_bucket_size",),
        "dynamic": (),
        "filtered": ("filter_freq", "headroom"),
        "adaptive": (
            "adaptive_hash_bucket_size",
            "filter_freq",
            "steps_to_live",
            "evict_every",
            "headroom",
            "migration",
        ),
    }[variant]
    common = ("dimension", "init_stddev", "learning_rate")
    return {name: getattr(settings, name) for name in common + relevant}


def check_and_scan(
    files: Dataset, args: argparse.Namespace
) -> tuple[variants.IdCounts, int]:
    """Counts the training ids, and checks both splits hold examples.

    Raises:
      UsageError: a split holds no examples, or training one class only.
    """
    counts = variants.scan(_reader(files.train, args, test=False))
    test = variants.scan(_reader(files.test, args, test=True))
    for name, found in (("training", counts), ("test", test)):
        if found.examples == 0:
            raise UsageError(
                f"the {name} files hold no complete batch of examples "
                f"(--batch-size {args.batch_size})"
            )
    if counts.positives in (0, counts.examples):
        raise UsageError("the training examples are all of one class")
    return counts, test.examples


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the example; returns the exit status (2 for bad input)."""
    p = parser()
    args = p.parse_args(argv)
    try:
        _check(args)
        settings = variants.Settings(
            **{
                f.name: getattr(args, f.name)
                for f in dataclasses.fields(variants.Settings)
            }
        )
        files = dataset(args)
        json_path = args.json or args.output_dir / "ctr.json"
        plot_path = args.plot or args.output_dir / "ctr.png"
        for path in (json_path, plot_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        counts, test_examples = check_and_scan(files, args)
    except (UsageError, ValueError, OSError) as error:
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {error}", file=sys.stderr)
        return 2
    print(
        f"data: {counts.examples:,} training examples, {test_examples:,} test; "
        f"{sum(counts.distinct.values()):,} distinct ids in training"
    )
    start = time.perf_counter()
    results = [run_variant(v, settings, counts, files, args) for v in args.variants]
    sweep = [r for r in results if r["variant"] == "static"]
    for buckets in sorted(set(args.sweep) - {settings.hash_bucket_size}):
        swept = dataclasses.replace(settings, hash_bucket_size=buckets)
        sweep.append(run_variant("static", swept, counts, files, args))
    print(report.table(results))
    payload = {
        "data": _data_summary(files, counts, test_examples),
        "variants": results,
        "sweep": sorted(sweep, key=lambda r: r["settings"]["hash_bucket_size"]),
        "seconds": time.perf_counter() - start,
    }
    report.write_json(json_path, payload)
    print(f"numbers: {json_path}")
    if not args.no_plot:
        title = "DeepFM, one pass"
        if files.meta is not None:
            title += f"; Bayes AUC {files.meta['test']['bayes_auc']:.4f}"
        report.plot(plot_path, results, payload["sweep"], title)
        print(f"plot: {plot_path}")
    return 0


def _data_summary(
    files: Dataset, counts: variants.IdCounts, test_examples: int
) -> dict[str, Any]:
    summary = {
        "train_files": [f.name for f in files.train],
        "test_files": [f.name for f in files.test],
        "train_examples": counts.examples,
        "test_examples": test_examples,
        "distinct_ids": counts.distinct,
    }
    if files.meta is not None:
        summary["bayes_auc"] = files.meta["test"]["bayes_auc"]
        summary["bayes_auc_late_ids"] = files.meta["test"]["bayes_auc_late_ids"]
        summary["seed"] = files.meta["seed"]
    return summary
