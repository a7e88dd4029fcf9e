"""Speed of a full training step of one adaptive column, against TensorFlow.

Run: `python benchmarks/step_bench.py [--quick]` (TensorFlow from the `bench`
extra; without it, the JAX figures only).

One adaptive column: dim 16, 1M static buckets, a dynamic table of capacity
2**21 holding 1M keys (50% load). Each step takes a fresh batch of 65,536 ids
(one per example) drawn Zipf(1.1) over 10M raw ids; ids of the 1M most frequent
raw ids are routed to the dynamic table (mask 1, a frequency threshold), the
others to their static buckets. The step: `input_layer` (lookup, insert,
migrate, combine), the gradient of `sum(tanh(emb) * g)` (a stand-in for a
model: the gradient depends on the embeddings), and `apply_gradients` (sparse
FTRL on both tables), jitted with the state donated; the static buckets of
the int ids are TensorFlow's, computed in the step (`prepare`'s default). The
host work of `prepare` (keys, padding) is reported apart: a pipeline does it
ahead.

- `adaptive_step`: against TensorFlow's CPU step for a plain hash-bucket table
  of 1M rows on the same batches (`embedding_lookup`, the gradient, `tf.unique` +
  `unsorted_segment_sum`, `ResourceSparseApplyFtrl`), alternated batch by batch.
  Target: ratio <= 1.0, though ours does strictly more.
- `adaptive_step_buckets_in_step`: that step (without TensorFlow) computing
  its ids' buckets from their keys, `prepare`'s default, against the same
  step given the host's (`int_buckets="host"`), on two like tables.
- `adaptive_step_capacity_2_23`: the same step with a dynamic capacity of 2**23
  against 2**20 (both holding the same 512K keys). Target: ratio <= 1.2.
- `adaptive_step_count_min_admission`: the step with no mask, ids admitted by a
  `CounterFilter(5)` (a count-min sketch), against the step routed by the mask,
  on the same batches and tables. Target: ratio <= 1.15.
- `evict_capacity_2_21`: `fc.evict` (`GlobalStepEvict(8)`) on that table of
  capacity 2**21, against one training step, alternated. Target: ratio <= 3.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import paired_medians, report, zipf_ranks

import adaptive_jax as aj
from adaptive_jax import feature_column as fc

DIM = 16
BUCKETS = 1_000_000
FTRL = dict(
    learning_rate=0.05, l1_regularization_strength=0.01, l2_regularization_strength=0.01
)


class Adaptive:
    """The JAX side: one adaptive column and its jitted, donated step."""

    def __init__(
        self,
        capacity: int,
        raw: np.ndarray,
        frequent: int,
        batch: int,
        *,
        filter_freq: int | None = None,
        steps_to_live: int | None = None,
        fill: bool = True,
        buckets: int = BUCKETS,
    ):
        admission = None if filter_freq is None else aj.CounterFilter(filter_freq)
        evict = None if steps_to_live is None else aj.GlobalStepEvict(steps_to_live)
        option = aj.EmbeddingVariableOption(
            capacity=capacity, filter_option=admission, evict_option=evict
        )
        categorical = fc.categorical_column_with_adaptive_embedding(
            "ids", buckets, dtype="int64", ev_option=option
        )
        self.column = fc.embedding_column(categorical, DIM, "mean")
        self.optimizer = aj.optim.ftrl(**FTRL)
        self.state = fc.init_state([self.column], self.optimizer, jax.random.key(0))
        self.raw, self.frequent = raw, frequent
        column, optimizer = self.column, self.optimizer

        def step(state, features, g):
            emb, state, residuals = fc.input_layer(
                features, [column], state, optimizer=optimizer
            )
            d_emb = jax.grad(lambda e: jnp.sum(jnp.tanh(e) * g))(emb)
            return fc.apply_gradients(state, residuals, d_emb, [column], optimizer)

        self.step = jax.jit(step, donate_argnums=0)
        self.evict = jax.jit(
            lambda state: fc.evict(state, [column], optimizer), donate_argnums=0
        )
        for start in range(0, frequent if fill else 0, batch):  # by the mask
            ranks = np.arange(start, min(start + batch, frequent))
            self.run((self.features(ranks, by_mask=True), None))

    def features(
        self, ranks: np.ndarray, by_mask: bool = True, int_buckets: str = "device"
    ) -> dict:
        """A prepared batch: routed by the frequency-threshold mask, or left to
        the column's admission filter; its static buckets computed in the step
        (the default) or, `int_buckets="host"`, here."""
        values = self.raw[ranks]
        batch = aj.sparse.from_dense(values[:, None], missing=None)
        masks = {"ids": (ranks < self.frequent).astype(np.int32)} if by_mask else None
        return fc.prepare(
            {"ids": batch},
            [self.column],
            adaptive_mask_tensors=masks,
            int_buckets=int_buckets,
        )

    def buckets(self, ranks: np.ndarray) -> np.ndarray:
        """The static buckets of a batch, as TensorFlow finds them."""
        features = self.features(ranks, int_buckets="host")
        return np.asarray(features["ids_embedding"].buckets)

    def run(self, item) -> None:
        features, _ = item
        batch_size = features["ids_embedding"].ids.batch_size
        if getattr(self, "g", None) is None or self.g.shape[0] != batch_size:
            self.g = jnp.ones((batch_size, DIM), jnp.float32)
        self.state = self.step(self.state, features, self.g)
        jax.block_until_ready(self.state)

    def run_evict(self, item) -> None:
        del item
        self.state = self.evict(self.state)
        jax.block_until_ready(self.state)


def step_buckets(args, rng: np.random.Generator, raw, runs: int, warmup: int) -> None:
    """The step computing its int ids' buckets (`prepare`'s default) against
    the same step given them from the host, on two like tables, the same
    batches."""
    device = Adaptive(2**21, raw, frequent=1_000_000, batch=args.batch)
    host = Adaptive(2**21, raw, frequent=1_000_000, batch=args.batch)
    batches = []
    for _ in range(runs + warmup):
        ranks = zipf_ranks(rng, args.batch, len(raw))
        batches.append(
            (device.features(ranks), host.features(ranks, int_buckets="host"))
        )
    ms, base = paired_medians(
        lambda b: device.run((b[0], None)),
        lambda b: host.run((b[1], None)),
        batches,
        warmup,
    )
    report("adaptive_step_buckets_in_step", ms, base, baseline="the host's buckets")


def tensorflow_step(rng: np.random.Generator):
    try:
        import tensorflow as tf
    except ImportError:
        return None
    from tensorflow.python.ops import gen_training_ops

    var = tf.Variable(rng.standard_normal((BUCKETS, DIM), dtype=np.float32) * 0.25)
    accum = tf.Variable(np.full((BUCKETS, DIM), 0.1, np.float32))
    linear = tf.Variable(np.zeros((BUCKETS, DIM), np.float32))

    @tf.function
    def step(buckets, g):
        with tf.GradientTape() as tape:
            emb = tf.nn.embedding_lookup(var, buckets)
            loss = tf.reduce_sum(tf.tanh(emb) * g)
        grad = tape.gradient(loss, var)  # IndexedSlices
        unique, position = tf.unique(grad.indices)
        summed = tf.math.unsorted_segment_sum(grad.values, position, tf.size(unique))
        gen_training_ops.resource_sparse_apply_ftrl(
            var.handle,
            accum.handle,
            linear.handle,
            summed,
            unique,
            lr=FTRL["learning_rate"],
            l1=FTRL["l1_regularization_strength"],
            l2=FTRL["l2_regularization_strength"],
            lr_power=-0.5,
        )
        return tf.reduce_sum(var[0])

    def run(item) -> None:
        _, buckets = item
        step(tf.constant(buckets), tf.ones((len(buckets), DIM))).numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    runs, warmup = (6, 3) if args.quick else (args.runs, 5)
    rng = np.random.default_rng(0)
    raw = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, 10_000_000)

    ours = Adaptive(2**21, raw, frequent=1_000_000, batch=args.batch)
    theirs = tensorflow_step(rng)
    batches, prepare_ms = [], []
    for _ in range(runs + warmup):
        ranks = zipf_ranks(rng, args.batch, len(raw))
        start = time.perf_counter()
        features = ours.features(ranks)
        prepare_ms.append((time.perf_counter() - start) * 1e3)
        batches.append((features, ours.buckets(ranks)))
    dynamic_share = float(
        np.mean(
            [np.mean(np.asarray(f["ids_embedding"].to_dynamic)) for f, _ in batches]
        )
    )
    extra = {
        "dynamic_share": round(dynamic_share, 3),
        "prepare_ms": round(float(np.median(prepare_ms)), 1),
    }
    if theirs is None:
        ms = paired_medians(ours.run, lambda b: None, batches, warmup)[0]
        report("adaptive_step", ms, None, tensorflow="not installed", **extra)
    else:
        ms, base = paired_medians(ours.run, theirs, batches, warmup)
        report(
            "adaptive_step", ms, base, baseline="tensorflow hash-bucket step", **extra
        )
    del ours

    step_buckets(args, rng, raw, runs, warmup)
    small = Adaptive(2**20, raw, frequent=2**19, batch=args.batch)
    large = Adaptive(2**23, raw, frequent=2**19, batch=args.batch)
    batches = []
    for _ in range(runs + warmup):
        features = small.features(zipf_ranks(rng, args.batch, len(raw)))
        batches.append((features, None))
    ms_large, ms_small = paired_medians(large.run, small.run, batches, warmup)
    report("adaptive_step_capacity_2_23", ms_large, ms_small, baseline="capacity 2**20")
    del small, large

    masked = Adaptive(2**21, raw, frequent=1_000_000, batch=args.batch)
    sketched = Adaptive(
        2**21, raw, frequent=1_000_000, batch=args.batch, filter_freq=5, steps_to_live=8
    )
    pairs = []
    for _ in range(runs + warmup):
        ranks = zipf_ranks(rng, args.batch, len(raw))
        pairs.append((masked.features(ranks), sketched.features(ranks, by_mask=False)))
    ms_sketch, ms_mask = paired_medians(
        lambda p: sketched.run((p[1], None)),
        lambda p: masked.run((p[0], None)),
        pairs,
        warmup,
    )
    report(
        "adaptive_step_count_min_admission",
        ms_sketch,
        ms_mask,
        baseline="the same step routed by a mask",
        promotions=fc.summary(sketched.state)["ids_embedding"]["promotions"],
    )
    ms_evict, ms_step = paired_medians(
        sketched.run_evict, lambda p: sketched.run((p[1], None)), pairs, warmup
    )
    stats = fc.summary(sketched.state)["ids_embedding"]
    report(
        "evict_capacity_2_21",
        ms_evict,
        ms_step,
        baseline="one training step",
        evicted=stats["evicted_steps"],
        live_rows=stats["live_rows"],
    )


if __name__ == "__main__":
    main()
