"""Why a promoted id's copied bucket helps or hurts: a per-field study of one run.

Run: `python benchmarks/migration_study.py --data-dir DIR [--migration M]
[--threshold T] [--learning-rate LR] [--optimizer ftrl|adagrad] [--seed S]
[--out FILE.npz]`, on a directory holding `train.txt.gz` and `test.txt.gz`
(benchmarks/data/README.md builds them). `--compare A.npz B.npz` compares
two runs' promoted ids instead.

It trains the CTR example's adaptive column (one bucket per field) for one
pass with its own step, which also hands back the gradient of every entry,
and records per field:

- the examples each store served in training and their click rate (a
  bucket serves a field's rare ids, and the first `T - 1` occurrences of
  every id);
- each promoted id's bucket value at its promotion (what migration copies)
  and its row at the end;
- the migration signal: for the entries of rows in their first `T`
  occurrences after promotion, the gradient's component along the field's
  bucket value, `g . b / |b|`, summed: negative means those rows' loss falls
  as they move towards the bucket (a copy helps them), positive away from it
  (a copy hurts), with its t statistic;
- the test AUC of the serving export.

`--compare none.npz deeprec.npz` pairs the ids promoted in both runs: how far
the bucket value copied in the second run lies from where the row ended in
the first, against how far 0 does, per field.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings
from typing import Any

import jax
import numpy as np
import optax

from adaptive_jax import data, export, optim
from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.examples.ctr import cli, run, train, variants
from adaptive_jax.examples.ctr import model as model_lib

FIELDS = len(data.CATEGORICAL_COLUMNS)


def _step(columns, model, optimizers):
    """The CTR example's step, also returning the residuals and the gradient
    of the stacked embeddings."""
    columns, tables_opt = tuple(columns), optimizers.tables

    def step(params, opt_state, tables, ids, counts, labels, weights):
        stacked, tables, residuals = fc.input_layer(
            ids, columns, tables, optimizer=tables_opt
        )
        embeddings = stacked.reshape(labels.shape[0], -1)

        def loss_fn(params, embeddings):
            logits = model.apply(params, embeddings, counts)
            return model_lib.summed_log_loss(logits, labels, weights)

        _, (d_params, d_embeddings) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
            params, embeddings
        )
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizers.dense.update(d_params, opt_state, params)
        params = optax.apply_updates(params, updates)
        d_stacked = d_embeddings.reshape(stacked.shape)
        tables = fc.apply_gradients(tables, residuals, d_stacked, columns, tables_opt)
        return params, opt_state, tables, residuals, d_stacked

    return jax.jit(step, donate_argnums=(2,))


def state_dim(tables, name) -> int:
    return tables[name].static.values.shape[1]


class Record:
    """Per-field sums over the training pass."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        zeros = lambda: np.zeros(FIELDS)  # noqa: E731
        self.static_n, self.static_pos = zeros(), zeros()
        self.dynamic_n, self.dynamic_pos = zeros(), zeros()
        self.signal, self.signal_sq, self.signal_n = zeros(), zeros(), zeros()
        self.promoted: dict[int, tuple[int, np.ndarray]] = {}  # key -> field, b

    def add(self, residuals, d_stacked, labels, weights, tables, name, capacity):
        (residuals,) = residuals.values()
        segments = np.asarray(residuals.segments)
        static_rows = np.asarray(residuals.static_rows)
        dynamic_rows = np.asarray(residuals.dynamic_rows)
        grads = np.asarray(d_stacked).reshape(-1, state_dim(tables, name))
        state = tables[name]
        buckets = np.asarray(state.static.values)
        freq = np.asarray(state.dynamic.table.freq)
        example, field = segments // FIELDS, segments % FIELDS
        valid = example < labels.shape[0]
        valid[valid] &= weights[example[valid]] > 0
        label = np.where(valid, labels[np.minimum(example, labels.shape[0] - 1)], 0)
        on_static = valid & (static_rows < buckets.shape[0])
        on_dynamic = valid & (dynamic_rows < capacity)
        np.add.at(self.static_n, field[on_static], 1)
        np.add.at(self.static_pos, field[on_static], label[on_static])
        np.add.at(self.dynamic_n, field[on_dynamic], 1)
        np.add.at(self.dynamic_pos, field[on_dynamic], label[on_dynamic])
        rows = np.where(on_dynamic, dynamic_rows, 0)
        young = on_dynamic & (freq[rows] < 2 * self.threshold)
        b = buckets[field]  # one bucket per field: bucket f is field f's
        unit = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        along = np.sum(grads[segments.clip(0, grads.shape[0] - 1)] * unit, axis=1)
        np.add.at(self.signal, field[young], along[young])
        np.add.at(self.signal_sq, field[young], along[young] ** 2)
        np.add.at(self.signal_n, field[young], 1)

    def summary(self) -> dict[str, Any]:
        used = np.flatnonzero(self.static_n + self.dynamic_n)
        rate = lambda p, n: (p / np.maximum(n, 1)).round(4)  # noqa: E731
        t = self.signal / np.sqrt(np.maximum(self.signal_sq, 1e-30))
        return {
            f"C{f + 1}": {
                "static_examples": int(self.static_n[f]),
                "static_click_rate": float(rate(self.static_pos, self.static_n)[f]),
                "dynamic_examples": int(self.dynamic_n[f]),
                "dynamic_click_rate": float(rate(self.dynamic_pos, self.dynamic_n)[f]),
                "young_entries": int(self.signal_n[f]),
                "signal_along_bucket": round(float(self.signal[f]), 4),
                "signal_t": round(float(t[f]), 2),
            }
            for f in used
        }


def study(args: argparse.Namespace) -> dict[str, Any]:
    files = [str(args.data_dir / "train.txt.gz"), str(args.data_dir / "test.txt.gz")]
    options = cli.parser().parse_args(
        ["--train", files[0], "--test", files[1], "--seed", str(args.seed),
         "--batch-size", str(args.batch_size), "--no-progress"]
    )  # fmt: skip
    dataset = run.dataset(options)
    found = run.survey(dataset, options)
    settings = variants.Settings(
        migration=args.migration,
        filter_freq=args.threshold,
        learning_rate=args.learning_rate,
    )
    columns = variants.columns("adaptive", found.train, settings)
    model = model_lib.DeepFM(settings.dimension)
    table_opt = (optim.ftrl if args.optimizer == "ftrl" else optim.adagrad)(
        args.learning_rate
    )
    optimizers = train.Optimizers(table_opt, optax.adam(1e-3))
    state = train.init(
        columns, model, optimizers, jax.random.key(args.seed), args.batch_size
    )
    step = _step(columns, model, optimizers)
    params, opt_state, tables = state.params, state.opt_state, state.tables
    (name,) = tables
    capacity = tables[name].dynamic.capacity
    record = Record(args.threshold)
    find = jax.jit(lambda table, keys: table_lib.find(table, keys).rows)
    for batch in run.reader(dataset.train, options, test=False):
        (ids, counts, labels, weights), _ = train._device_batch(
            batch, columns, args.batch_size
        )
        static_before = np.asarray(tables[name].static.values)
        keys = ids[name].ids.values
        had_row = np.asarray(find(tables[name].dynamic.table, keys)) >= 0
        params, opt_state, tables, residuals, d_stacked = step(
            params, opt_state, tables, ids, counts, labels, weights
        )
        record.add(
            residuals, d_stacked, np.asarray(labels), np.asarray(weights),
            tables, name, capacity,
        )  # fmt: skip
        new = ~had_row & (np.asarray(find(tables[name].dynamic.table, keys)) >= 0)
        if new.any():
            key_of = ids_lib.to_numpy(keys)
            bucket = np.asarray(ids[name].buckets)
            for i in np.flatnonzero(new):
                at = int(bucket[i])
                record.promoted.setdefault(int(key_of[i]), (at, static_before[at]))
    exported = export.export(tables, columns)
    final = export.export(tables, columns, drop_zero_rows=False).columns[name]
    labels, probabilities = train.predict(
        exported, model, params, run.reader(dataset.test, options, test=True)
    )
    scores = train.scores(labels, probabilities, None)
    if args.out:
        row = {k: i for i, k in enumerate(final.keys.tolist())}
        kept = [k for k in record.promoted if k in row]
        np.savez(
            args.out,
            keys=np.array(kept, np.int64),
            field=np.array([record.promoted[k][0] for k in kept], np.int32),
            bucket=np.stack([record.promoted[k][1] for k in kept]),
            final=np.stack([final.values[row[k]] for k in kept]),
        )
    return {
        "data": args.data_dir.name,
        "migration": args.migration,
        "threshold": args.threshold,
        "learning_rate": args.learning_rate,
        "optimizer": args.optimizer,
        "seed": args.seed,
        "auc": round(scores["auc"], 4),
        "log_loss": round(scores["log_loss"], 4),
        "promoted": len(record.promoted),
        "fields": record.summary(),
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def compare(first: pathlib.Path, second: pathlib.Path) -> dict[str, Any]:
    """Per field: where the rows of `first` ended against the bucket values
    `second` copied, for the ids promoted in both."""
    a, b = np.load(first), np.load(second)
    common, ia, ib = np.intersect1d(a["keys"], b["keys"], return_indices=True)
    end, copied, field = a["final"][ia], b["bucket"][ib], b["field"][ib]
    out: dict[str, Any] = {"ids": int(common.size)}
    for f in np.unique(field):
        e, c = end[field == f], copied[field == f]
        out[f"C{f + 1}"] = {
            "ids": len(e),
            "rms_end": round(float(np.sqrt(np.mean(e**2))), 4),
            "rms_copied": round(float(np.sqrt(np.mean(c**2))), 4),
            # < 1: the copy starts closer to where the id ends than 0 does
            "dist_copy_over_dist_zero": round(
                float(np.sum((e - c) ** 2) / max(np.sum(e**2), 1e-30)), 3
            ),
            "cos_copy_mean_end": round(_cosine(c.mean(0), e.mean(0)), 3),
            "slope_end_on_copy": round(
                float(np.sum(c * e) / max(np.sum(c * c), 1e-30)), 3
            ),
        }
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=pathlib.Path)
    p.add_argument("--migration", default="deeprec")
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=0.005)
    p.add_argument("--optimizer", choices=("ftrl", "adagrad"), default="ftrl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--compare", type=pathlib.Path, nargs=2)
    args = p.parse_args(argv)
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MalformedLineWarning)
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        print(json.dumps(study(args)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
