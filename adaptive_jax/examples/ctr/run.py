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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from adaptive_jax import data, export
from adaptive_jax import feature_column as fc
from adaptive_jax.examples.ctr import choice, cli, report, scan, train, variants
from adaptive_jax.examples.ctr import model as model_lib


class UsageError(ValueError):
    """A command-line input that the run cannot use; printed, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The files of a run and what is known of them.

    Attributes:
      train: the training files, in order.
      test: the test files, in order.
      meta: the synthetic data's metadata, or None.
    """

    train: tuple[pathlib.Path, ...]
    test: tuple[pathlib.Path, ...]
    meta: dict[str, Any] | None


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
        return Dataset(data.data_files(args.train), data.data_files(args.test), None)
    files = data.ensure_dataset(
        args.data_dir,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.data_seed,
    )
    return Dataset((files.train,), (files.test,), files.metadata())


def reader(files: Sequence[pathlib.Path], args, *, test: bool) -> data.CriteoReader:
    """Batches of the split, every example (the step pads a short last one)."""
    return data.CriteoReader(
        files,
        batch_size=args.batch_size,
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
    if args.budget is not None and args.budget < 1:
        raise UsageError("--budget must be bytes >= 1")
    if args.sweep is not None and any(buckets < 1 for buckets in args.sweep):
        raise UsageError("--sweep sizes must be >= 1")
    if not 0.0 <= args.late_start <= 1.0:
        raise UsageError("--late-start must be in [0, 1]")
    if args.rare_zero and "adaptive" not in args.variants:
        raise UsageError(
            "--rare-zero applies to the adaptive variant only: add adaptive to "
            "--variants, or leave --rare-zero out"
        )


@dataclasses.dataclass(frozen=True)
class Survey:
    """What the scans of both splits found, before any training.

    Attributes:
      train: the training split's `IdCounts` (its sizes make the columns).
      test: the test split's.
      late: `[test examples] uint8`, each test example's late ids.
      problems: the data's defects, also printed as warnings.
    """

    train: scan.IdCounts
    test: scan.IdCounts
    late: np.ndarray
    problems: tuple[scan.Problem, ...]


def survey(files: Dataset, args: argparse.Namespace) -> Survey:
    """Scans both splits, and checks that they can be trained and scored.

    Raises:
      UsageError: a split holds no examples, or training one class only.
    """
    train_reader = reader(files.train, args, test=False)
    counts = scan.scan(train_reader)
    test_reader, late_parts = reader(files.test, args, test=True), []

    def counting_late(batches):  # the late ids in the same pass as the scan
        for batch in batches:
            late_parts.append(scan.late_ids([batch], counts, args.late_start))
            yield batch

    test = scan.scan(counting_late(test_reader))
    for name, found in (("training", counts), ("test", test)):
        if found.examples == 0:
            raise UsageError(f"the {name} files hold no examples")
    if counts.positives in (0, counts.examples):
        raise UsageError("the training examples are all of one class")
    names = (_names(files.train), _names(files.test))
    found = scan.problems(counts, test, names)
    for split, r in ((names[0], train_reader), (names[1], test_reader)):
        if r.malformed or r.unusual:
            found.append(
                scan.Problem(
                    f"{split}: {r.malformed:,} malformed lines skipped, {r.unusual:,} "
                    "kept with values that are not hexadecimal"
                )
            )
    late = np.concatenate(late_parts) if late_parts else np.zeros(0, np.uint8)
    return Survey(counts, test, late, tuple(found))


def _names(files: Sequence[pathlib.Path]) -> str:
    return files[0].name if len(files) == 1 else f"{files[0].name} (+{len(files) - 1})"


class Trained(NamedTuple):
    """A variant after one pass over the training split."""

    columns: list[fc.EmbeddingColumn]
    model: model_lib.DeepFM
    state: train.TrainState
    timing: dict[str, float]


Adjust = Callable[[train.Step, train.TrainState], tuple[train.Step, train.TrainState]]


def trained(
    variant: str,
    settings: variants.Settings,
    found: Survey,
    files: Dataset,
    args: argparse.Namespace,
    *,
    adjust: Adjust | None = None,
) -> Trained:
    """`variant` trained for one pass over `files.train`. `adjust` may change
    the step and the starting state (a probe's control, say)."""
    counts = found.train
    columns = variants.columns(variant, counts, settings)
    model = model_lib.DeepFM(settings.dimension)
    optimizers = train.optimizers(settings.learning_rate)
    state = train.init(
        columns, model, optimizers, jax.random.key(args.seed), args.batch_size
    )
    step = train.make_step(columns, model, optimizers, settings.evict_every)
    if adjust is not None:
        step, state = adjust(step, state)
    state, timing = train.train(
        state,
        step,
        reader(files.train, args, test=False),
        columns,
        batch_size=args.batch_size,
        total=-(-counts.examples // args.batch_size),
        progress=not args.no_progress,
        description=f"{variant:>8}",
    )
    return Trained(columns, model, state, timing)


def predicted(
    done: Trained, exported: Any, scored: Sequence[pathlib.Path], args
) -> tuple[np.ndarray, np.ndarray]:
    """`(labels, probabilities)` of the files `scored`, from `exported` (the
    export of `done`'s tables, or of a probe's change of them)."""
    batches = reader(scored, args, test=True)
    return train.predict(exported, done.model, done.state.params, batches)


def run_variant(
    variant: str,
    settings: variants.Settings,
    found: Survey,
    files: Dataset,
    args: argparse.Namespace,
    *,
    test_files: Sequence[pathlib.Path] | None = None,
    late: np.ndarray | None = None,
) -> dict[str, Any]:
    """Trains one variant for a pass, exports it and scores the export.

    `test_files` and `late` score another split (a validation split, say)
    than `files.test`. The result holds the scores, the bytes, the speed,
    the settings, and the test split's `labels` and `probabilities` (for
    paired comparisons; `report.write_json` leaves them out).
    """
    counts = found.train
    done = trained(variant, settings, found, files, args)
    state, timing = done.state, done.timing
    exported = export.export(state.tables, done.columns)
    scored = files.test if test_files is None else test_files
    labels, probabilities = predicted(done, exported, scored, args)
    late = found.late if late is None else late
    sized = _sizing_of(variant, settings, counts)
    return {
        "variant": variant,
        **sized,
        **train.scores(labels, probabilities, late[: labels.size]),
        **train.sizes(state.tables, exported),
        "examples_per_s": timing["examples_per_s"],
        "train_seconds": timing["seconds"],
        "train_examples": timing["examples"],
        "test_examples": int(labels.size),
        "settings": _settings_of(variant, settings.sized(counts), sized),
        "labels": labels,
        "probabilities": probabilities,
    }


def _sizing_of(
    variant: str, settings: variants.Settings, counts: scan.IdCounts
) -> dict[str, Any]:
    """With a budget, what `size_columns` chose for `variant`: the threshold,
    the buckets and rows in all, the bytes it measured."""
    if settings.budget is None:
        return {}
    sized = variants.sizing(variant, counts, settings)
    sizes = list(sized.sizes.values())
    return {
        "sizing": {
            "budget": settings.budget,
            "budget_of": settings.budget_of,
            "filter_freq": sizes[0].filter_freq,
            "hash_bucket_size": sum(s.hash_bucket_size or 0 for s in sizes),
            "capacity": sum(s.capacity or 0 for s in sizes),
            "training_bytes": sized.training_bytes,
            "export_bytes_bound": sized.export_bytes,
            "reason": sized.reason,
        }
    }


def _settings_of(
    variant: str, settings: variants.Settings, sized: dict[str, Any]
) -> dict[str, Any]:
    """The settings that matter to `variant`, with the sizes a budget chose."""
    relevant = {
        "static": ("hash_bucket_size",),
        "dynamic": ("pressure_evict", "evict_every"),
        "filtered": ("filter_freq", "headroom"),
        "adaptive": (
            "adaptive_hash_bucket_size",
            "filter_freq",
            "steps_to_live",
            "evict_every",
            "headroom",
            "migration",
            "rare_zero",
        ),
    }[variant]
    common = ("dimension", "init_stddev", "learning_rate", "budget", "budget_of")
    chosen = {name: getattr(settings, name) for name in common + relevant}
    if sized:
        buckets = sized["sizing"]["hash_bucket_size"]
        by_budget = {
            "hash_bucket_size": buckets,
            "adaptive_hash_bucket_size": buckets,
            "filter_freq": sized["sizing"]["filter_freq"],
        }
        chosen.update((k, v) for k, v in by_budget.items() if k in chosen)
    return chosen


def default_sweep(counts: scan.IdCounts) -> list[int]:
    """Static sizes below one per distinct id: a 16th and a quarter of them."""
    return sorted({max(26, counts.distinct_total // d) for d in (16, 4)})


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the example; returns the exit status (2 for bad input)."""
    p = cli.parser()
    args = p.parse_args(argv)
    try:
        _check(args)
        settings = cli.settings_of(args)
        files = dataset(args)
        json_path = args.json or args.output_dir / "ctr.json"
        plot_path = args.plot or args.output_dir / "ctr.png"
        for path in (json_path, plot_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        found = survey(files, args)
        sizes = variants.describe(settings, found.train, tuple(args.variants))
    except (UsageError, ValueError, OSError) as error:
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {error}", file=sys.stderr)
        return 2
    counts = found.train
    print(
        f"data: {counts.examples:,} training examples, {found.test.examples:,} test; "
        f"{counts.distinct_total:,} distinct ids in training; "
        f"{int((found.late > 0).sum()):,} test examples hold late ids"
    )
    for problem in found.problems:
        print(f"warning: {problem.what}", file=sys.stderr)
    source = "the training data"
    if settings.budget is not None:
        source += f" for a {settings.budget_of} budget of {settings.budget:,} bytes"
    print(f"columns, sized from {source}:")
    for line in sizes:
        print(f"  {line}")
    start = time.perf_counter()
    chosen = None
    if cli.chooses_rare_zero(args) and "adaptive" in args.variants:
        chosen = choice.choose_held_out(settings, files, args)
        settings = dataclasses.replace(settings, rare_zero=chosen.rare_zero)
        print(choice.describe(chosen))
    results = [run_variant(v, settings, found, files, args) for v in args.variants]
    sweep = [r for r in results if r["variant"] == "static"]
    swept_sizes = default_sweep(counts) if args.sweep is None else args.sweep
    for buckets in sorted(
        set(swept_sizes) - {settings.sized(counts).hash_bucket_size}
    ):  # the sweep's static tables are sized by their buckets, not the budget
        swept = dataclasses.replace(settings, hash_bucket_size=buckets, budget=None)
        sweep.append(run_variant("static", swept, found, files, args))
    print(report.table(results))
    payload = {
        "data": _data_summary(files, found),
        "variants": results,
        "sweep": sorted(sweep, key=lambda r: r["settings"]["hash_bucket_size"]),
        "seconds": time.perf_counter() - start,
    }
    if chosen is not None:
        payload["rare_zero_choice"] = dataclasses.asdict(chosen)
    report.write_json(json_path, payload)
    print(f"numbers: {json_path}")
    if not args.no_plot:
        title = "DeepFM, one pass"
        if files.meta is not None:
            title += f"; Bayes AUC {files.meta['test']['bayes_auc']:.4f}"
        report.plot(plot_path, results, payload["sweep"], title)
        print(f"plot: {plot_path}")
    return 0


def _data_summary(files: Dataset, found: Survey) -> dict[str, Any]:
    counts = found.train
    summary = {
        "train_files": [f.name for f in files.train],
        "test_files": [f.name for f in files.test],
        "train_examples": counts.examples,
        "test_examples": found.test.examples,
        "test_examples_with_late_ids": int((found.late > 0).sum()),
        "distinct_ids": counts.distinct,
        "problems": [problem.what for problem in found.problems],
    }
    if files.meta is not None:
        summary["bayes_auc"] = files.meta["test"]["bayes_auc"]
        summary["seed"] = files.meta["seed"]
    return summary
