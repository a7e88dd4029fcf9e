"""Batches prepared in Grain's worker processes, trained by a jitted step.

Run: `python examples/grain_input.py [--workers 2] [--steps 40]` (Grain from
the `grain` extra: `pip install 'adaptive_jax[grain]'`).

A click log of (user, item, label) records, in memory, as a Grain
`MapDataset`: shuffled, batched, and mapped through
`pipeline.PrepareBatch`, which runs `feature_column.prepare` (TensorFlow's
buckets of the string ids, DeepRec's keys, padding) in Grain's worker
processes (`mp_prefetch`), so that the training process only runs the step.
Two adaptive columns with admission (`CounterFilter(2)`) and a logistic
regression over their embeddings; the loss falls as the tables learn.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import pipeline

BATCH = 256
USERS, ITEMS = 2000, 500


def records(count: int, seed: int = 0) -> list[dict[str, object]]:
    """Clicks of a hidden model: a user clicks an item when their hidden
    scores add up to more than 0."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.3, count) % USERS
    items = rng.zipf(1.2, count) % ITEMS
    user_score = np.random.default_rng(1).normal(size=USERS)
    item_score = np.random.default_rng(2).normal(size=ITEMS)
    clicks = (user_score[users] + item_score[items]) > 0
    return [
        {"user": f"u{u}", "item": f"i{i}", "label": np.float32(c)}
        for u, i, c in zip(users, items, clicks, strict=True)
    ]


def columns() -> list[fc.EmbeddingColumn]:
    admit = aj.EmbeddingVariableOption(capacity=4096, filter_option=aj.CounterFilter(2))
    return [
        fc.embedding_column(
            fc.categorical_column_with_adaptive_embedding(
                key, 64, dtype="string", ev_option=admit
            ),
            dimension=1,
            initializer=aj.initializers.zeros(),
        )
        for key in ("user", "item")
    ]


def make_step(cols: Sequence[fc.EmbeddingColumn], opt):
    def step(tables, ids, labels):
        emb, tables, residuals = fc.input_layer(ids, cols, tables, optimizer=opt)

        def loss_fn(emb):
            logits = jnp.sum(emb, axis=1)
            return jnp.mean(jax.nn.softplus(logits) - labels * logits)

        loss, d_emb = jax.value_and_grad(loss_fn)(emb)
        tables = fc.apply_gradients(tables, residuals, d_emb, cols, opt)
        return tables, loss

    return jax.jit(step, donate_argnums=0)


def dataset(cols, count: int, workers: int) -> grain.IterDataset:
    """The records, shuffled, in batches prepared by `workers` processes
    (0: in this process)."""
    return (
        grain.MapDataset.source(records(count))
        .shuffle(seed=0)
        .batch(BATCH, drop_remainder=True)
        .map(pipeline.PrepareBatch(cols, size=BATCH))
        .to_iter_dataset()
        .mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    )


def main(argv: Sequence[str] | None = None) -> list[float]:
    """Trains for `--steps` batches; prints and returns the mean loss of each
    tenth of them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags
        flags.FLAGS.mark_as_parsed()
    cols, opt = columns(), aj.optim.ftrl(0.5)
    tables = fc.init_state(cols, opt, jax.random.key(0))
    step = make_step(cols, opt)
    losses = []
    iterator = iter(dataset(cols, args.steps * BATCH, args.workers))
    try:
        for batch in iterator:
            tables, loss = step(tables, batch["ids"], batch["label"])
            losses.append(float(loss))
    finally:
        iterator.close()
    tenth = max(len(losses) // 10, 1)
    means = [
        float(np.mean(losses[i : i + tenth])) for i in range(0, len(losses), tenth)
    ]
    print("mean loss by tenth of the run:", " ".join(f"{m:.4f}" for m in means))
    return means


if __name__ == "__main__":
    main()
