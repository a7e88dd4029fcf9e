"""A small training run, for the resume test: run in separate processes.

    python tests/resume_worker.py straight N OUT
    python tests/resume_worker.py first K CKPT
    python tests/resume_worker.py rest N CKPT OUT

`straight` trains N steps; `first` trains K steps and saves; `rest` restores in
a fresh process and trains up to step N. OUT receives the checksums of every
leaf of the final state (embeddings, dense parameters, optimizer state, PRNG
key). The data of step t depends on t alone.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax.persist import checkpoint

BATCH = 64

adaptive = fc.embedding_column(
    fc.categorical_column_with_adaptive_embedding(
        "user",
        50,
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=64,
            filter_option=aj.CounterFilter(2),
            evict_option=aj.GlobalStepEvict(4),
        ),
    ),
    4,
)
plain = fc.embedding_column(
    fc.categorical_column_with_embedding(
        "item", dtype="string", ev_option=aj.EmbeddingVariableOption(capacity=128)
    ),
    4,
    "sum",
)
COLUMNS = [adaptive, plain]
TABLES = aj.optim.ftrl(0.1, l1_regularization_strength=0.01)
DENSE = optax.adam(0.01)


def init():
    key = jax.random.key(0)
    params = {"w": jax.random.normal(key, (8, 1)) * 0.1, "b": jnp.zeros(1)}
    return {
        "embeddings": fc.init_state(COLUMNS, TABLES, key),
        "params": params,
        "opt": DENSE.init(params),
        "rng": jax.random.key(1),
    }


def batch(step: int):
    rng = np.random.default_rng(step)
    users = rng.zipf(1.3, BATCH) % 100
    items = [
        [f"i{v}" for v in rng.integers(0, 300, rng.integers(0, 3))]
        for _ in range(BATCH)
    ]
    labels = (rng.random(BATCH) < 0.3).astype(np.float32)
    features = fc.prepare({"user": users[:, None], "item": items}, COLUMNS, size=128)
    return features, jnp.asarray(labels)


@jax.jit
def train_step(state, features, labels):
    emb, embeddings, residuals = fc.input_layer(
        features, COLUMNS, state["embeddings"], optimizer=TABLES
    )
    rng, dropout = jax.random.split(state["rng"])

    def loss(params, emb):
        keep = jax.random.bernoulli(dropout, 0.9, emb.shape)
        logits = (jnp.where(keep, emb, 0.0) @ params["w"])[:, 0] + params["b"][0]
        return jnp.mean(jnp.logaddexp(0.0, logits) - labels * logits)

    grads, d_emb = jax.grad(loss, argnums=(0, 1))(state["params"], emb)
    updates, opt = DENSE.update(grads, state["opt"], state["params"])
    embeddings = fc.apply_gradients(embeddings, residuals, d_emb, COLUMNS, TABLES)
    embeddings = fc.maybe_evict(embeddings, COLUMNS, TABLES, every=3)
    params = optax.apply_updates(state["params"], updates)
    return {"embeddings": embeddings, "params": params, "opt": opt, "rng": rng}


def train(state, start: int, stop: int):
    for step in range(start, stop):
        state = train_step(state, *batch(step))
    return state


def write(state, path: str) -> None:
    manifest = checkpoint._manifest(state)
    with open(path, "w") as out:
        json.dump({leaf["path"]: leaf["checksum"] for leaf in manifest}, out)


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "straight":
        write(train(init(), 0, int(argv[1])), argv[2])
    elif mode == "first":
        steps = int(argv[1])
        with checkpoint.Checkpointer(argv[2]) as checkpoints:
            checkpoints.save(steps, train(init(), 0, steps))
    elif mode == "rest":
        with checkpoint.Checkpointer(argv[2]) as checkpoints:
            start = checkpoints.latest_step()
            state = checkpoints.restore(init())
        write(train(state, start, int(argv[1])), argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
