"""Which fields keep their buckets: chosen on a validation split.

A field's bucket serves its rare and unseen ids one learnt value. Where those
ids share something (a long tail of ad ids) it beats 0; where they do not, it
can cost more than it gives, in serving and in the training it shares
(docs/claim.md). So the adaptive variant's
fields are chosen, on data held out of training, among three candidates:

1. every field with its bucket (the plain adaptive variant);
2. the fields whose bucket, served as 0 in that model's export, raises the
   validation AUC, without a bucket (`Settings.rare_zero`); the others keep
   theirs;
3. no field with a bucket (every field's rare ids read 0, as "filtered").

Each is trained on the training split and scored on the validation split;
the best AUC wins (ties: the earlier). The first candidate's model is also
the one whose buckets are served as 0, field by field (fields without ids in
training are left out: they have nothing to serve). A validation split without
both a click and a non-click scores nothing: every field keeps its bucket,
and the run says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

from adaptive_jax import data, export, metrics, stacking
from adaptive_jax.examples.ctr import run, variants

VALIDATION = 0.15  # the training split's share held out, its end


@dataclasses.dataclass(frozen=True)
class Choice:
    """The fields without a bucket, and the evidence.

    Attributes:
      rare_zero: the chosen fields whose rare ids read 0.
      candidates: `{name: (fields without a bucket, validation AUC)}`, the
        three candidates ("buckets", "gainers", "none"; "gainers" left out
        when no field gains, or every field does).
      gains: per field with a bucket, the validation AUC of the first
        candidate with that field's bucket served as 0, minus as trained.
      unscored: why nothing was scored ("" when the candidates were).
    """

    rare_zero: tuple[str, ...]
    candidates: dict[str, tuple[tuple[str, ...], float]]
    gains: dict[str, float]
    unscored: str = ""


def auc(done: run.Trained, tables: dict[str, Any], files: run.Dataset, args) -> float:
    """AUC on `files.test` of `done`'s model with these tables."""
    exported = export.export(tables, done.columns)
    return metrics.auc(*run.predicted(done, exported, files.test, args))


def without_bucket(tables: dict[str, Any], column, field: str) -> dict[str, Any]:
    """`tables` with the static segment of the stacked `column`'s member
    `field` set to 0: that field's rare and unseen ids served 0."""
    members = column.categorical_column.members
    at = [m.key for m in members].index(field)
    start = int(stacking.offsets(members)[at])
    stop = start + members[at].hash_bucket_size
    state = tables[column.name]
    values = state.static.values.at[start:stop].set(0.0)
    return tables | {
        column.name: state.replace(static=state.static.replace(values=values))
    }


def bucket_gains(done: run.Trained, found: run.Survey, files, args) -> dict[str, float]:
    """Per field with rare ids, the validation AUC with its bucket served as
    0 minus the AUC as trained (the plain adaptive variant's one column)."""
    (column,) = done.columns
    tables = done.state.tables
    base = auc(done, tables, files, args)
    gains = {}
    for field in data.CATEGORICAL_COLUMNS:
        if found.train.distinct.get(field, 0) == 0:
            continue
        zeroed = without_bucket(tables, column, field)
        gains[field] = auc(done, zeroed, files, args) - base
    return gains


def choose(
    settings: variants.Settings,
    found: run.Survey,
    files: run.Dataset,
    args: argparse.Namespace,
) -> Choice:
    """The fields of the adaptive variant without a bucket, chosen by
    validation AUC (`files.test` is the validation split) among the three
    candidates of the module's docstring."""
    plain = dataclasses.replace(settings, rare_zero=())
    done = run.trained("adaptive", plain, found, files, args)
    gains = bucket_gains(done, found, files, args)
    gainers = tuple(f for f, gain in gains.items() if gain > 0)
    every = tuple(data.CATEGORICAL_COLUMNS)
    candidates = {"buckets": ((), auc(done, done.state.tables, files, args))}
    for name, fields in (("gainers", gainers), ("none", every)):
        if name == "gainers" and (not fields or len(fields) == len(gains)):
            continue
        zeroed = dataclasses.replace(plain, rare_zero=fields)
        done = run.trained("adaptive", zeroed, found, files, args)
        candidates[name] = (fields, auc(done, done.state.tables, files, args))
    best = max(candidates.values(), key=lambda c: c[1])  # the first of equals
    return Choice(best[0], candidates, gains)


def describe(chosen: Choice) -> str:
    """A line saying what was chosen, and on what evidence."""
    if chosen.unscored:
        return f"adaptive's fields keep their buckets, unchosen: {chosen.unscored}"
    scores = ", ".join(
        f"{name} {auc:.4f}" for name, (_, auc) in chosen.candidates.items()
    )
    fields = ", ".join(chosen.rare_zero) if chosen.rare_zero else "none"
    return (
        f"adaptive's fields without a bucket, chosen on the training split's "
        f"last {VALIDATION:.0%} (validation AUC: {scores}): {fields}"
    )


def held_out(
    train: Sequence[pathlib.Path], directory: pathlib.Path
) -> tuple[pathlib.Path, pathlib.Path]:
    """`(fit, valid)`: the lines of the files `train` (gzip or not), in
    order, written to `directory`: the first 85%, and the last 15%. The
    lines are read into memory: for the example's samples, not a day of
    logs."""
    lines = []
    for path in train:
        opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
        with opener(path, "rb") as stream:
            lines += stream.readlines()
    cut = round(len(lines) * (1 - VALIDATION))
    fit, valid = directory / "fit.txt", directory / "valid.txt"
    directory.mkdir(parents=True, exist_ok=True)
    fit.write_bytes(b"".join(lines[:cut]))
    valid.write_bytes(b"".join(lines[cut:]))
    return fit, valid


def choose_held_out(
    settings: variants.Settings, files: run.Dataset, args: argparse.Namespace
) -> Choice:
    """`choose` on the end of the training split held out as validation
    (the CTR example's `--rare-zero auto`); the test split is not read."""
    one_class = Choice((), {}, {}, unscored=(
        f"the training split's last {VALIDATION:.0%} does not hold both a click "
        "and a non-click"
    ))  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        fit, valid = held_out(files.train, pathlib.Path(scratch))
        if valid.stat().st_size == 0:
            return one_class
        split = run.Dataset((fit,), (valid,), None)
        found = run.survey(split, args)
        if found.test.positives in (0, found.test.examples):
            return one_class
        return choose(settings, found, split, args)
