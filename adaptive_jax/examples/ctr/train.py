"""One pass of training, and the evaluation of the exported model.

The step has jax-tpu-embedding's three phases, jitted together with the
embedding state donated: the input layer looks up (inserting and migrating
promoted ids), `jax.value_and_grad` of the DeepFM loss runs with respect to the
dense parameters and the embeddings, then the embeddings' gradient feeds a
sparse FTRL update of the tables, and an eviction pass runs every
`evict_every` steps. The ids are prepared on the host (`feature_column.prepare`:
Fingerprint64 of the strings, buckets) in a background thread
(`pipeline.Prefetcher`, `prepared`), while the device runs the previous step.

Evaluation reads the serving export (`export.export`), never the training
state, so the scores are those of the model a server would load.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from adaptive_jax import data, export, metrics, optim, pipeline, serving
from adaptive_jax import feature_column as fc
from adaptive_jax.examples.ctr import model as model_lib

Step = Callable[..., tuple[Any, Any, dict, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Optimizers:
    """The optimizers of the two halves of the model.

    Attributes:
      tables: the sparse FTRL of the embedding tables.
      dense: the optax optimizer of the DeepFM parameters.
    """

    tables: Any
    dense: optax.GradientTransformation


def optimizers(learning_rate: float) -> Optimizers:
    """FTRL of `learning_rate` on the tables, as DeepRec's users train them;
    Adam (1e-3) on the rest."""
    return Optimizers(optim.ftrl(learning_rate), optax.adam(1e-3))


@dataclasses.dataclass
class TrainState:
    """Everything training changes: dense parameters and their optimizer state,
    and the embedding state (tables, slots, counters) of every column."""

    params: Any
    opt_state: Any
    tables: dict


def init(
    columns: Sequence[fc.EmbeddingColumn],
    model: model_lib.DeepFM,
    optimizers: Optimizers,
    key: jax.Array,
    batch_size: int,
) -> TrainState:
    """Fresh parameters and tables, from `key`."""
    model_key, table_key = jax.random.split(key)
    width = len(data.CATEGORICAL_COLUMNS) * model.dimension
    params = model.init(
        model_key,
        jnp.zeros((batch_size, width), jnp.float32),
        jnp.zeros((batch_size, len(data.INTEGER_COLUMNS)), jnp.float32),
    )
    return TrainState(
        params,
        optimizers.dense.init(params),
        fc.init_state(columns, optimizers.tables, table_key),
    )


def make_step(
    columns: Sequence[fc.EmbeddingColumn],
    model: model_lib.DeepFM,
    optimizers: Optimizers,
    evict_every: int,
) -> Step:
    """The jitted training step: `(params, opt_state, tables, ids, counts,
    labels, weights) -> (params, opt_state, tables, loss)`, the tables donated.
    `weights` are 1 for an example, 0 for the padding of a short last batch."""
    columns = tuple(columns)
    ftrl = optimizers.tables

    def step(params, opt_state, tables, ids, counts, labels, weights):
        with jax.named_scope("ctr.lookup"):
            stacked, tables, residuals = fc.input_layer(
                ids, columns, tables, optimizer=ftrl
            )
        embeddings = stacked.reshape(labels.shape[0], -1)  # the fields side by side

        def loss_fn(params, embeddings):
            # Summed, not averaged: FTRL's step then does not shrink with the
            # batch size (Adam's does not depend on the scale anyway).
            logits = model.apply(params, embeddings, counts)
            return model_lib.summed_log_loss(logits, labels, weights)

        with jax.named_scope("ctr.dense"):
            loss, (d_params, d_embeddings) = jax.value_and_grad(
                loss_fn, argnums=(0, 1)
            )(params, embeddings)
            # optax's Adam raises its decay to an int32 count, a promotion that
            # JAX's strict mode (the test suite's) refuses.
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = optimizers.dense.update(
                    d_params, opt_state, params
                )
            params = optax.apply_updates(params, updates)
        with jax.named_scope("ctr.sparse_update"):
            d_stacked = d_embeddings.reshape(stacked.shape)
            tables = fc.apply_gradients(tables, residuals, d_stacked, columns, ftrl)
            tables = fc.maybe_evict(tables, columns, ftrl, every=evict_every)
        return params, opt_state, tables, loss / jnp.maximum(jnp.sum(weights), 1.0)

    return jax.jit(step, donate_argnums=(2,))


def _features(batch: data.Batch) -> dict[str, np.ndarray]:
    """The batch's ids, by column: the stacked column's member features."""
    return batch.categorical


def _device_batch(
    batch: data.Batch, columns: Sequence[fc.EmbeddingColumn], batch_size: int
) -> tuple[tuple[dict, jax.Array, jax.Array, jax.Array], int]:
    """The batch, padded with empty examples to `batch_size`: its prepared ids
    (room for all 26 per example), counts, labels and weights (0: padding),
    prepared on the host and moved to the device in one call; and its number
    of examples."""
    weights = (np.arange(batch_size) < batch.size).astype(np.float32)
    examples = batch.size
    batch = data.pad_batch(batch, batch_size)
    size = batch_size * len(data.CATEGORICAL_COLUMNS)
    ids = fc.prepare(_features(batch), columns, size=size)
    counts = data.log_transform(batch.dense)
    return jax.device_put((ids, counts, batch.labels, weights)), examples


def prepared(
    batches: Iterable[data.Batch],
    columns: Sequence[fc.EmbeddingColumn],
    batch_size: int,
    *,
    workers: int = 1,
) -> pipeline.Prefetcher:
    """The batches read, prepared and moved to the device in background
    threads, two ahead of the step (`pipeline.Prefetcher`), in order."""
    prepare = functools.partial(_device_batch, columns=columns, batch_size=batch_size)
    return pipeline.Prefetcher(batches, prepare, workers=workers, depth=workers + 1)


def train(
    state: TrainState,
    step: Step,
    batches: Iterable[data.Batch],
    columns: Sequence[fc.EmbeddingColumn],
    *,
    batch_size: int,
    total: int | None = None,
    progress: bool = True,
    description: str = "",
) -> tuple[TrainState, dict[str, float]]:
    """One pass over `batches` of `batch_size` examples (a shorter last one is
    padded, so that the step compiles once and every example trains).

    Returns:
      The trained state and `{"examples", "seconds", "examples_per_s",
      "final_loss"}`; the rate leaves out the first step (compilation).
    """
    params, opt_state, tables = state.params, state.opt_state, state.tables
    examples, timed, start, loss = 0, 0, None, jnp.zeros([])
    with warnings.catch_warnings():  # the filters hold in the prefetcher's threads
        warnings.simplefilter("ignore", data.MalformedLineWarning)  # the scan told
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        with prepared(batches, columns, batch_size) as inputs:
            bar = tqdm.tqdm(
                inputs,
                total=total,
                desc=description,
                unit="batch",
                disable=not progress,
            )
            for (ids, counts, labels, weights), size in bar:
                params, opt_state, tables, loss = step(
                    params, opt_state, tables, ids, counts, labels, weights
                )
                examples += size
                if start is None:
                    jax.block_until_ready(loss)
                    start = time.perf_counter()
                else:
                    timed += size
    jax.block_until_ready(tables)
    seconds = time.perf_counter() - start if start is not None else 0.0
    timing = {
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": timed / seconds if seconds > 0 else 0.0,
        "final_loss": float(loss),
    }
    return TrainState(params, opt_state, tables), timing


def predict(
    exported: serving.Export,
    model: model_lib.DeepFM,
    params: Any,
    batches: Iterable[data.Batch],
) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities of every example of `batches`, from the export.

    Returns:
      `(labels [n] float32, probabilities [n] float32)`.
    """
    built = serving.build(exported)

    @jax.jit
    def score(params, built, ids, counts):
        embeddings = serving.lookup(built, ids).reshape(counts.shape[0], -1)
        return jax.nn.sigmoid(model.apply(params, embeddings, counts))

    labels, probabilities = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MalformedLineWarning)
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        for batch in batches:
            size = batch.size * len(data.CATEGORICAL_COLUMNS)
            ids = serving.prepare(built, _features(batch), size=size)
            counts = jnp.asarray(data.log_transform(batch.dense))
            probabilities.append(np.asarray(score(params, built, ids, counts)))
            labels.append(batch.labels)
    return np.concatenate(labels), np.concatenate(probabilities)


LATE_ID_BINS = ("0", "1", "2", "3+")  # late ids per example: the cold-start curve


def scores(
    labels: np.ndarray, probabilities: np.ndarray, late: np.ndarray | None
) -> dict[str, Any]:
    """AUC and log loss; with `late` (how many late ids each example holds,
    None without ground truth), the AUC of the examples with late ids and the
    cold-start curve: the AUC of the examples with 0, 1, 2 and 3 or more late
    ids. An AUC is None where its examples hold one class only."""
    result = {
        "auc": _auc(labels, probabilities),
        "log_loss": metrics.log_loss(labels, probabilities),
        "auc_late_ids": None,
        "auc_by_late_ids": None,
    }
    if late is not None:
        bins = np.minimum(late, len(LATE_ID_BINS) - 1)
        result["auc_late_ids"] = _auc(labels[late > 0], probabilities[late > 0])
        result["auc_by_late_ids"] = {
            name: _auc(labels[bins == i], probabilities[bins == i])
            for i, name in enumerate(LATE_ID_BINS)
        }
    return result


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return metrics.auc(labels, scores) if 0 < labels.sum() < labels.size else None


def sizes(tables: dict, exported: serving.Export) -> dict[str, int]:
    """Bytes of the embedding state and of its export, and table statistics.

    `param_bytes` is every array of the embedding state: values, FTRL slots,
    the dynamic tables' keys, index, free lists and counters, the admission
    sketches and the statistics. `export_bytes` is the serving export: static
    tables, the live rows that are not zero (keys, values, freqs, versions)
    and a plain dynamic table's default values.
    """
    report = export.size_report(tables, exported)["total"]
    summaries = list(fc.summary(tables).values())
    shares = [s["migration_share"] for s in summaries if "migration_share" in s]
    return {
        # "fitted" migration: the share of its bucket a promoted id of each
        # feature starts from, as measured in training
        **({"migration_share": [round(x, 4) for x in shares[0]]} if shares else {}),
        "param_bytes": int(report["training_bytes"]),
        "export_bytes": int(report["export_bytes"]),
        "live_rows": int(report["live_rows"]),
        "exported_rows": int(report["exported_rows"]),
        "overflows": sum(int(s.get("overflows", 0)) for s in summaries),
        "promotions": sum(int(s.get("promotions", 0)) for s in summaries),
        "evictions": sum(  # for every reason: steps, l2, pressure
            int(v) for s in summaries for k, v in s.items() if k.startswith("evicted_")
        ),
    }
