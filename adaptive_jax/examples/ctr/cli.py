"""The options of `python -m adaptive_jax.examples.ctr`, and what its table's
columns mean (its `--help`)."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

from adaptive_jax import data
from adaptive_jax.examples.ctr import variants

TABLE_COLUMNS = """\
the table's columns (ctr.json holds them per variant, with the settings):
  AUC           area under the ROC curve on the test split, scored through
                the serving export (export.export + serving.lookup)
  log loss      mean binary cross-entropy on the test split
  AUC late ids  AUC of the test examples holding an id first seen at or after
                --late-start of the training examples, or never seen in
                training (cold start); n/a when those examples are all of one
                class, or none hold such an id
  param MB      every array of the embedding state in training: values, FTRL
                slots, keys, index, free list, counters, sketch, statistics
  export MB     the serving export: static tables, the live non-zero rows with
                their keys, freqs and versions, a plain table's default rows
  examples/s    training examples per second, the first step (compilation)
                left out
"""


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
        epilog=TABLE_COLUMNS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = p.add_argument_group("data (default: the synthetic Criteo set)")
    d.add_argument("--train", nargs="+", type=pathlib.Path, metavar="PATH",
                   help="your Criteo-format training files or directories "
                   "(text or gzip), in stream order; needs --test")  # fmt: skip
    d.add_argument("--test", nargs="+", type=pathlib.Path, metavar="PATH",
                   help="your Criteo-format test files or directories")  # fmt: skip
    d.add_argument("--train-limit", type=int, help="train on the first N examples")
    d.add_argument("--test-limit", type=int, help="test on the first N examples")
    d.add_argument("--late-start", type=float, default=0.8, metavar="FRACTION",
                   help="an id first seen at or after this fraction of the "
                   "training examples, or never, is late (default: %(default)s)"
                   )  # fmt: skip
    g = p.add_argument_group("synthetic data (ignored with --train/--test)")
    g.add_argument("--data-dir", type=pathlib.Path,
                   help="where the synthetic set is kept (default: "
                   "$ADAPTIVE_JAX_DATA or the user's cache)")  # fmt: skip
    g.add_argument("--num-train", type=int, default=data.synthetic.DEFAULT_TRAIN,
                   help="training examples (default: %(default)s)")  # fmt: skip
    g.add_argument("--num-test", type=int, default=data.synthetic.DEFAULT_TEST,
                   help="test examples (default: %(default)s)")  # fmt: skip
    g.add_argument("--data-seed", type=int, default=data.synthetic.DEFAULT_SEED,
                   help="the click model's seed (default: %(default)s)")  # fmt: skip
    m = p.add_argument_group(
        "model and columns (sizes default to ones read off the training data; "
        "the run prints what it chose)"
    )
    m.add_argument("--variants", nargs="+", choices=variants.VARIANTS,
                   default=list(variants.VARIANTS))  # fmt: skip
    m.add_argument("--hash-bucket-size", type=int, metavar="BUCKETS",
                   help="the static variant's buckets, over the columns by "
                   "their distinct ids (default: one per distinct id)")  # fmt: skip
    m.add_argument("--adaptive-hash-bucket-size", type=int, metavar="BUCKETS",
                   help="the adaptive variant's buckets, over the columns by "
                   "their rare ids (default: one per column)")  # fmt: skip
    m.add_argument("--sweep", nargs="*", type=int, metavar="BUCKETS",
                   help="more sizes of the static variant, for the plot's line "
                   "(default: a 16th and a quarter of the distinct ids; none: "
                   "no sweep)")  # fmt: skip
    defaults = variants.Settings()
    m.add_argument("--filter-freq", type=int, default=defaults.filter_freq,
                   help="CounterFilter of filtered and adaptive (default: "
                   "%(default)s)")  # fmt: skip
    m.add_argument("--steps-to-live", type=int, default=defaults.steps_to_live,
                   help="GlobalStepEvict of adaptive, in steps (default: no "
                   "eviction)")  # fmt: skip
    m.add_argument("--pressure-evict", action="store_true",
                   help="PressureEvict of dynamic: the stalest rows go when its "
                   "table is fuller than 95%% (for a capacity a --budget "
                   "limits)")  # fmt: skip
    m.add_argument("--evict-every", type=int, default=defaults.evict_every,
                   help="steps between evictions (default: %(default)s)")  # fmt: skip
    m.add_argument("--headroom", type=float, default=defaults.headroom,
                   help="dynamic capacity over the ids expected to reach "
                   "--filter-freq (default: %(default)s)")  # fmt: skip
    m.add_argument("--migration", choices=variants.MIGRATIONS,
                   default=defaults.migration,
                   help="how a promoted id starts (default: %(default)s)")  # fmt: skip
    m.add_argument("--rare-zero", nargs="*", metavar="FIELD",
                   help="fields of adaptive whose rare and unseen ids read 0 "
                   "as in filtered (no bucket, the same rows); 'auto' (the "
                   "default) chooses them on the training split's last 15%% "
                   "(choice.py: two or three more trainings): every field "
                   "with its bucket, none, or those whose bucket costs there; "
                   "no FIELD keeps every bucket unchosen (the default with "
                   "--budget)")  # fmt: skip
    m.add_argument("--budget", type=int, metavar="BYTES",
                   help="size every variant to BYTES (feature_column."
                   "size_columns: buckets, capacity and threshold from the "
                   "training data's counts, the reasons printed); overrides "
                   "the sizes above, --filter-freq becomes the lowest "
                   "threshold (default: sizes from the data alone)")  # fmt: skip
    m.add_argument("--budget-of", choices=("training", "export"),
                   default=defaults.budget_of,
                   help="what --budget bounds: the embedding state in training "
                   "or its serving export (default: %(default)s)")  # fmt: skip
    m.add_argument("--dimension", type=int, default=defaults.dimension,
                   help="embedding dimension (default: %(default)s)")  # fmt: skip
    m.add_argument("--init-stddev", type=float, default=defaults.init_stddev,
                   help="the tables' initializer (default: %(default)s)")  # fmt: skip
    m.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                   help="FTRL's, on the tables (default: %(default)s)")  # fmt: skip
    m.add_argument("--batch-size", type=int, default=1024,
                   help="examples per step (default: %(default)s)")  # fmt: skip
    m.add_argument("--seed", type=int, default=0,
                   help="of the model's init (default: %(default)s)")  # fmt: skip
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("ctr_out"),
                   help="for the JSON and the plot (default: %(default)s)")  # fmt: skip
    o.add_argument("--json", type=pathlib.Path, help="default: OUTPUT_DIR/ctr.json")
    o.add_argument("--plot", type=pathlib.Path, help="default: OUTPUT_DIR/ctr.png")
    o.add_argument("--no-plot", action="store_true")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def settings_of(args: argparse.Namespace) -> variants.Settings:
    """The column settings that the options give."""
    fields = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(variants.Settings)
    }
    named = () if args.rare_zero is None else args.rare_zero
    rare_zero = () if chooses_rare_zero(args) else tuple(named)
    return variants.Settings(**fields | {"rare_zero": rare_zero})


def chooses_rare_zero(args: argparse.Namespace) -> bool:
    """Whether the adaptive variant's fields without a bucket are chosen on
    validation: `--rare-zero auto`, or no `--rare-zero` (the default) for a
    run with the adaptive variant and without `--budget`.

    Raises:
      ValueError: "auto" beside field names, or beside --budget.
    """
    if args.rare_zero is None:
        return "adaptive" in args.variants and args.budget is None
    if "auto" not in args.rare_zero:
        return False
    if len(args.rare_zero) > 1:
        raise ValueError("--rare-zero: give 'auto' alone, or field names")
    if args.budget is not None:
        raise ValueError("--rare-zero auto and --budget cannot be combined")
    return True
