"""A two-tower model's train step in the Flax faces, against plain `nnx.Embed`.

Run: `python benchmarks/flax_bench.py [--quick]`.

The model (`examples/two_tower.py`'s shape): a user column of string ids and an
item column of int64 ids, both adaptive (hash buckets, a dynamic table,
`CounterFilter(2)`, `GlobalStepEvict`), dimension 16, a tower of two dense
layers over each, the score their dot product; Adam on the dense params, FTRL
on the tables. Batches of Zipf(1.1) ids, prepared on the host before timing.
The plain model is the same towers over two `nnx.Embed` tables of as many rows
as an adaptive column holds (buckets + capacity), ids hashed on the host, every
table row trained by Adam.

Steps, timed alternately batch by batch (medians after warm-up, ms):
- `nnx_step`: `aj.nnx.make_train_step` (one donated `jax.jit` of the pair's
  split state: its variables' values read, and the new ones written back, at
  each call), against the fastest of the plain model's three steps (a
  graph-mode `nnx.jit` over `nnx.cached_partial`, split/merge, tree mode).
  Target: examples/s >= 0.85x.
- `nnx_step_split_merge`, `nnx_step_tree_mode`: the same step jitted two
  other ways (`nnx.split`, a donated `jax.jit`, `nnx.update`; a tree-mode
  `nnx.jit`, `graph=False`), against `nnx_step`.
- `nnx_step_vs_linen`: `nnx_step` against `aj.nn.make_train_step`'s step of
  the linen model. Target: ratio <= 1.2.
- `nnx_pure_step_vs_linen`: the step's pure form (`step.pure`: split once,
  a donated `jax.jit` of the state, no graph work between steps) against the
  linen step.

First calls, each variant in a process of its own (so that no compiled or
traced function is shared), median of `--repeats`:
- `first_step_adaptive_<face>`: the first step's wall time (trace, compile,
  run) against the plain model's first step. Target: ratio <= 3.
- `init_<face>`, `export`, `serving_build`, `size_report`: the first call of
  model construction, `export.export`, `serving.build` and
  `export.size_report` (seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import report, zipf_ranks
from flax import nnx

import adaptive_jax as aj
from adaptive_jax import export, hashing, serving
from adaptive_jax import feature_column as fc

DIM, BUCKETS, CAPACITY, IDS = 16, 4096, 1 << 15, 200_000
SPARSE = aj.optim.ftrl(0.05, l1_regularization_strength=0.001)
DENSE = optax.adam(1e-3)


def columns() -> list[fc.EmbeddingColumn]:
    option = aj.EmbeddingVariableOption(
        capacity=CAPACITY,
        filter_option=aj.CounterFilter(2),
        evict_option=aj.GlobalStepEvict(10_000),
    )
    return [
        fc.embedding_column(
            fc.categorical_column_with_adaptive_embedding(
                key, BUCKETS, dtype=dtype, ev_option=option
            ),
            DIM,
        )
        for key, dtype in (("user", "string"), ("item", "int64"))
    ]


COLUMNS = columns()


class Tower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(DIM, 64, rngs=rngs)
        self.out = nnx.Linear(64, DIM, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


class AdaptiveTwoTower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embed = aj.nnx.Embed(COLUMNS, SPARSE, by_name=True, rngs=rngs)
        self.user, self.item = Tower(rngs), Tower(rngs)

    def __call__(self, features):
        e = self.embed(features)
        u, i = self.user(e["user_embedding"]), self.item(e["item_embedding"])
        return jnp.sum(u * i, axis=1)


class PlainTwoTower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        rows = BUCKETS + CAPACITY
        self.user_table = nnx.Embed(rows, DIM, rngs=rngs)
        self.item_table = nnx.Embed(rows, DIM, rngs=rngs)
        self.user, self.item = Tower(rngs), Tower(rngs)

    def __call__(self, ids):
        u = self.user(self.user_table(ids["user"]))
        i = self.item(self.item_table(ids["item"]))
        return jnp.sum(u * i, axis=1)


class LinenTwoTower(linen.Module):
    @linen.compact
    def __call__(self, features):
        e = aj.nn.Embed(COLUMNS, SPARSE, by_name=True)(features)

        def tower(x, name):
            return linen.Dense(DIM, name=f"{name}_out")(
                linen.relu(linen.Dense(64, name=f"{name}_hidden")(x))
            )

        u, i = tower(e["user_embedding"], "user"), tower(e["item_embedding"], "item")
        return jnp.sum(u * i, axis=1)


def nnx_loss(model, inputs, labels):
    return optax.sigmoid_binary_cross_entropy(model(inputs), labels).mean()


def linen_loss(logits, labels):
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def batches(n: int, batch: int, seed: int = 0) -> list[tuple]:
    """(prepared features, plain ids, labels) per batch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        users = zipf_ranks(rng, batch, IDS)
        items = zipf_ranks(rng, batch, IDS)
        raw = {"user": np.array([f"u{u}" for u in users]), "item": items}
        plain = {
            "user": jnp.asarray(hashing.to_hash_bucket_fast(raw["user"], 1 << 15)),
            "item": jnp.asarray(items % (BUCKETS + CAPACITY)),
        }
        labels = jnp.asarray((users + items) % 3 == 0, jnp.float32)
        out.append((fc.prepare(raw, COLUMNS), plain, labels))
    return out


def split_step(grad_fn):
    """`nnx.split` the model and optimizer, a donated `jax.jit` of the pure
    step, `nnx.update` them back: the other way to jit an NNX step."""

    def pure(graphdef, state, inputs, labels):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = grad_fn(model, inputs, labels)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    jitted = jax.jit(pure, static_argnums=0, donate_argnums=1)

    def step(model, optimizer, inputs, labels):
        graphdef, state = nnx.split((model, optimizer))
        state, loss = jitted(graphdef, state, inputs, labels)
        nnx.update((model, optimizer), state)
        return loss

    return step


def cached_step(grad_fn, model, optimizer):
    """A graph-mode `nnx.jit`, both donated, over `nnx.cached_partial` (the
    plain model's first way)."""

    @nnx.jit(donate_argnums=(0, 1), graph=True, graph_updates=True)
    def step(model, optimizer, inputs, labels):
        loss, grads = grad_fn(model, inputs, labels)
        optimizer.update(model, grads)
        return loss

    return nnx.cached_partial(step, model, optimizer, graph=True, graph_updates=True)


def tree_step(grad_fn):
    """A tree-mode `nnx.jit` (`graph=False`), both donated."""

    @nnx.jit(donate_argnums=(0, 1), graph=False)
    def step(model, optimizer, inputs, labels):
        loss, grads = grad_fn(model, inputs, labels)
        optimizer.update(model, grads)
        return loss

    return step


class Runner:
    """One variant: its model, optimizer and step on given inputs."""

    def __init__(self, kind: str, seed: int = 0):
        self.kind = kind
        rngs = nnx.Rngs(seed)
        if kind == "linen":
            self.model = LinenTwoTower()
            self.sample = batches(1, 8, seed=99)[0][0]
            variables = jax.jit(self.model.init)(jax.random.key(seed), self.sample)
            self.state = aj.nn.TrainState.create(variables, DENSE)
            self._step = jax.jit(
                aj.nn.make_train_step(self.model.apply, linen_loss, DENSE),
                donate_argnums=0,
            )
            return
        adaptive = kind.startswith("nnx_adaptive")
        self.model = (AdaptiveTwoTower if adaptive else PlainTwoTower)(rngs)
        self.optimizer = nnx.Optimizer(self.model, DENSE, wrt=nnx.Param)
        grad_fn = (aj.nnx.value_and_grad if adaptive else nnx.value_and_grad)(nnx_loss)
        if kind == "nnx_adaptive":
            self._step = aj.nnx.make_train_step(nnx_loss)
        elif kind == "nnx_adaptive_pure":
            self._step = aj.nnx.make_train_step(nnx_loss).pure
            self.graphdef, self.state = nnx.split((self.model, self.optimizer))
        elif kind.endswith("_split"):
            self._step = split_step(grad_fn)
        elif kind.endswith("_tree"):
            self._step = tree_step(grad_fn)
        else:  # nnx_plain: as make_train_step
            self._step = cached_step(grad_fn, self.model, self.optimizer)

    def __call__(self, item: tuple) -> jax.Array:
        features, plain, labels = item
        inputs = plain if "plain" in self.kind else features
        if self.kind == "linen":
            self.state, metrics = self._step(self.state, inputs, labels)
            return metrics["loss"]
        if self.kind == "nnx_plain":
            return self._step(inputs, labels)
        if self.kind == "nnx_adaptive_pure":
            self.state, metrics = self._step(self.graphdef, self.state, inputs, labels)
            return metrics["loss"]
        out = self._step(self.model, self.optimizer, inputs, labels)
        return out["loss"] if isinstance(out, dict) else out


def steps(quick: bool, batch: int) -> None:
    n, warmup = (12, 4) if quick else (40, 8)
    items = batches(n, batch)
    kinds = [
        "nnx_adaptive",
        "nnx_adaptive_split",
        "nnx_adaptive_tree",
        "nnx_adaptive_pure",
        "linen",
        "nnx_plain",
        "nnx_plain_split",
        "nnx_plain_tree",
    ]
    runners = {kind: Runner(kind) for kind in kinds}
    times = {kind: [] for kind in kinds}
    for item in items:
        for kind in kinds:
            start = time.perf_counter()
            jax.block_until_ready(runners[kind](item))
            times[kind].append(time.perf_counter() - start)
    ms = {k: float(np.median(v[warmup:]) * 1e3) for k, v in times.items()}
    plain = min(ms[k] for k in kinds if "plain" in k)
    for kind in kinds:
        print(json.dumps({"name": f"step_ms_{kind}", "median_ms": round(ms[kind], 4)}))
    report(
        "nnx_step",
        ms["nnx_adaptive"],
        plain,
        batch=batch,
        examples_per_s=round(batch / ms["nnx_adaptive"] * 1e3),
        plain_examples_per_s=round(batch / plain * 1e3),
        examples_per_s_ratio=round(plain / ms["nnx_adaptive"], 3),
    )
    report("nnx_step_split_merge", ms["nnx_adaptive_split"], ms["nnx_adaptive"])
    report("nnx_step_tree_mode", ms["nnx_adaptive_tree"], ms["nnx_adaptive"])
    report("nnx_step_vs_linen", ms["nnx_adaptive"], ms["linen"])
    report("nnx_pure_step_vs_linen", ms["nnx_adaptive_pure"], ms["linen"])


def first_calls(kind: str, batch: int) -> dict[str, float]:
    """Seconds of the first calls of one variant, in this (fresh) process."""
    item = batches(1, batch)[0]
    out = {}
    start = time.perf_counter()
    runner = Runner(kind)
    jax.block_until_ready(nnx.state(runner.model) if kind != "linen" else runner.state)
    out["init"] = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(runner(item))
    out["first_step"] = time.perf_counter() - start
    if kind == "nnx_adaptive":
        tables, cols = aj.nnx.tables(runner.model), aj.nnx.columns(runner.model)
        start = time.perf_counter()
        exported = export.export(tables, cols)
        out["export"] = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(serving.build(exported))
        out["serving_build"] = time.perf_counter() - start
        start = time.perf_counter()
        export.size_report(tables, exported)
        out["size_report"] = time.perf_counter() - start
    return out


def first_call_report(repeats: int, batch: int) -> None:
    runs = {}
    for kind in ("nnx_adaptive", "linen", "nnx_plain"):
        for _ in range(repeats):
            result = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--first-calls",
                    kind,
                    "--batch",
                    str(batch),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            one = json.loads(result.stdout.strip().splitlines()[-1])
            for name, seconds in one.items():
                runs.setdefault((kind, name), []).append(seconds)
    s = {key: float(np.median(v)) for key, v in runs.items()}
    plain = s[("nnx_plain", "first_step")]
    for face in ("nnx_adaptive", "linen"):
        report(f"first_step_{face}", s[(face, "first_step")] * 1e3, plain * 1e3)
        report(f"init_{face}", s[(face, "init")] * 1e3, s[("nnx_plain", "init")] * 1e3)
    for name in ("export", "serving_build", "size_report"):
        report(name, s[("nnx_adaptive", name)] * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-calls", help=argparse.SUPPRESS)
    parser.add_argument("--skip-first-calls", action="store_true")
    args = parser.parse_args()
    if args.first_calls:
        print(json.dumps(first_calls(args.first_calls, args.batch)))
        return
    steps(args.quick, args.batch)
    if not args.skip_first_calls:
        first_call_report(1 if args.quick else args.repeats, args.batch)


if __name__ == "__main__":
    main()
