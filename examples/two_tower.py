"""A two-tower click model in Flax NNX, from training to serving.

Run: `python examples/two_tower.py` (`make demo-more` runs it too).

Users (string ids) and items (int64 ids) each get an adaptive column: rare ids
share hash buckets, an id seen 3 times gets a row of its own (admission,
`CounterFilter(3)`), rows idle for 300 steps go back (eviction,
`GlobalStepEvict`, every 50 steps). Each column feeds a tower of its own; the
score is the towers' dot product. The clicks come from a hidden model (each
user and item has a hidden vector), so the score has something to find.

Then the whole state (model, tables, optimizer) is checkpointed and restored
into a fresh model (bit for bit), the tables are exported, and the export is
served: the served model (`aj.nnx.serve`) scores new examples from the files
alone, and its scores equal the trained model's.
"""

from __future__ import annotations

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import adaptive_jax as aj
from adaptive_jax import export, metrics, serving
from adaptive_jax import feature_column as fc
from adaptive_jax.checkpoint import Checkpointer

USERS, ITEMS, BATCH, STEPS, DIM = 2_000, 5_000, 256, 300, 8


def columns() -> list[fc.EmbeddingColumn]:
    option = aj.EmbeddingVariableOption(
        capacity=2048,
        filter_option=aj.CounterFilter(3),
        evict_option=aj.GlobalStepEvict(300),
    )
    user = fc.categorical_column_with_adaptive_embedding(
        "user", hash_bucket_size=256, dtype="string", ev_option=option
    )
    item = fc.categorical_column_with_adaptive_embedding(
        "item", hash_bucket_size=256, dtype="int64", ev_option=option
    )
    return [fc.embedding_column(c, DIM) for c in (user, item)]


COLUMNS = columns()


class Tower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(DIM, 32, rngs=rngs)
        self.out = nnx.Linear(32, DIM, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


class TwoTower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        # by_name: each column's embedding by its name, whatever the order.
        self.embed = aj.nnx.Embed(COLUMNS, aj.optim.ftrl(0.5), by_name=True, rngs=rngs)
        self.user, self.item = Tower(rngs), Tower(rngs)

    def __call__(self, features) -> jax.Array:
        e = self.embed(features)
        user, item = self.user(e["user_embedding"]), self.item(e["item_embedding"])
        return jnp.sum(user * item, axis=1)


def loss_fn(model, features, labels):
    y, weights = labels  # weights: 0 for a padded example
    losses = optax.sigmoid_binary_cross_entropy(model(features), y)
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


class Clicks:
    """Examples drawn from a hidden model: Zipf-popular users and items, each
    with a hidden vector; a click is likelier when the two agree."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.users = self.rng.normal(size=(USERS, 4))
        self.items = self.rng.normal(size=(ITEMS, 4))

    def batch(self, size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        u = (self.rng.zipf(1.3, size) - 1) % USERS
        i = (self.rng.zipf(1.3, size) - 1) % ITEMS
        logit = np.sum(self.users[u] * self.items[i], axis=1)
        click = self.rng.random(size) < 1 / (1 + np.exp(-logit))
        raw = {"user": np.array([f"user-{x}" for x in u]), "item": i.astype(np.int64)}
        return raw, click.astype(np.float32)


def prepared(raw, labels, size=BATCH):
    """A batch on the host, padded to `size` examples (padding weighted 0)."""
    raw, labels, weights = aj.nnx.pad_batch(raw, labels, size)
    return fc.prepare(raw, COLUMNS), (jnp.asarray(labels), jnp.asarray(weights))


def main(steps: int = STEPS) -> dict[str, float]:
    data = Clicks(seed=0)
    model = TwoTower(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(0.02), wrt=nnx.Param)
    step = aj.nnx.make_train_step(loss_fn, evict_every=50)
    for i in range(steps):
        size = BATCH if i < steps - 1 else BATCH - 56  # a short last batch
        m = step(model, optimizer, *prepared(*data.batch(size)))
        if i % 50 == 0 or i == steps - 1:
            print(f"step {i:4d}  loss {float(m['loss']):.4f}")
    stats = fc.summary(model)  # the tables, found in the model
    for name, s in stats.items():
        print(f"{name}: {s['live_rows']} rows, promotions {s['promotions']}")

    test_raw, test_labels = data.batch(2048)
    features = fc.prepare(test_raw, COLUMNS)
    scores = model(features)  # outside the step: an eval, nothing changes
    auc = metrics.auc(test_labels, np.asarray(scores))
    print(f"test AUC {auc:.4f}")

    with tempfile.TemporaryDirectory() as directory:
        with Checkpointer(f"{directory}/checkpoints") as checkpoints:
            checkpoints.save(steps, nnx.state((model, optimizer)))
            fresh = TwoTower(nnx.Rngs(1))
            fresh_optimizer = nnx.Optimizer(fresh, optax.adam(0.02), wrt=nnx.Param)
            target = nnx.state((fresh, fresh_optimizer))
            nnx.update((fresh, fresh_optimizer), checkpoints.restore(target))
        resumed = bool(jnp.array_equal(fresh(features), scores))
        print(f"restored from the checkpoint, same scores: {resumed}")

        tables, cols = aj.nnx.tables(model), aj.nnx.columns(model)
        serving.save(export.export(tables, cols), f"{directory}/export")
        report = export.size_report(tables, export.export(tables, cols))
        print(
            f"export: {report['total']['export_bytes']:,} bytes, training "
            f"state {report['total']['training_bytes']:,}"
        )
        # A serving process: the files, numpy and jax; no optimizer, no tables.
        built = serving.build(serving.load(f"{directory}/export"))
        served = aj.nnx.serve(model, built)
        served_scores = served(serving.prepare(built, test_raw))
    same = bool(jnp.array_equal(served_scores, scores))
    print(f"served scores equal the model's: {same}")
    return {"auc": auc, "resumed": resumed, "served_equal": same}


if __name__ == "__main__":
    main()
