"""Speed of one sparse FTRL step, against TensorFlow's CPU kernels.

Run: `python benchmarks/optim_bench.py [--quick]`. The TensorFlow comparison
needs the `bench` extra (`pip install -e '.[bench]'`, tensorflow-cpu); without it
the script reports the JAX times only.

One sparse FTRL step on a `[1M, 16] float32` table (and its two slots) with
65,536 ids drawn Zipf(1.1) over the rows (about 20K distinct), a fresh batch per
run:

- `sparse_ftrl_step`: `optim.apply_sparse` (sum repeats, gather, update,
  scatter), jitted, table and slots donated; baseline: TensorFlow's `tf.unique` +
  `tf.math.unsorted_segment_sum` + `ResourceSparseApplyFtrl` on resource
  variables, in a `tf.function`, on the same batches. Target: ratio <= 0.6.
- `sparse_ftrl_step_4x_rows`: the same step on a table of 4M rows, against the
  1M-row step: the cost of a step must not grow with the table (ratio ~1).

The two are timed alternately, batch by batch; medians after warm-up, one JSON
line per measurement.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from _timing import paired_medians, report, zipf_ranks

from adaptive_jax import optim

DIM = 16
CONFIG = dict(
    learning_rate=0.05, l1_regularization_strength=0.01, l2_regularization_strength=0.01
)


def zipf_rows(rng: np.random.Generator, size: int, num_rows: int) -> np.ndarray:
    """Row ids, Zipf(1.1) over a random order of the rows."""
    order = rng.permutation(num_rows)
    return order[zipf_ranks(rng, size, num_rows)].astype(np.int32)


def jax_step(num_rows: int, rng: np.random.Generator):
    """A function running one donated sparse FTRL step on its own table."""
    spec = optim.Ftrl(**CONFIG)
    table = jnp.asarray(rng.standard_normal((num_rows, DIM), dtype=np.float32) * 0.01)
    state = {"table": table, "slots": spec.init_slots(table)}
    step = jax.jit(optim.apply_sparse, static_argnums=0, donate_argnums=(1, 2))

    def run(batch):
        rows, grads = batch
        state["table"], state["slots"] = step(
            spec, state["table"], state["slots"], rows, grads
        )
        jax.block_until_ready(state["table"])

    return run


def tensorflow_step(num_rows: int, rng: np.random.Generator):
    """The same step with TensorFlow's CPU kernels, or None without TensorFlow."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    from tensorflow.python.ops import gen_training_ops

    init = rng.standard_normal((num_rows, DIM), dtype=np.float32) * 0.01
    var = tf.Variable(init)
    accum = tf.Variable(np.full((num_rows, DIM), 0.1, np.float32))
    linear = tf.Variable(np.zeros((num_rows, DIM), np.float32))

    @tf.function
    def step(rows, grads):
        unique, position = tf.unique(rows)
        summed = tf.math.unsorted_segment_sum(grads, position, tf.size(unique))
        gen_training_ops.resource_sparse_apply_ftrl(
            var.handle,
            accum.handle,
            linear.handle,
            summed,
            unique,
            lr=CONFIG["learning_rate"],
            l1=CONFIG["l1_regularization_strength"],
            l2=CONFIG["l2_regularization_strength"],
            lr_power=-0.5,
        )
        return tf.reduce_sum(var[0])  # something to wait for

    def run(batch):
        rows, grads = batch
        step(tf.constant(np.asarray(rows)), tf.constant(np.asarray(grads))).numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, < 60 s")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    runs, warmup = (7, 3) if args.quick else (args.runs, 5)
    rng = np.random.default_rng(0)

    def batches(num_rows: int):
        out = []
        for _ in range(runs + warmup):
            rows = zipf_rows(rng, args.batch, num_rows)
            grads = rng.standard_normal((args.batch, DIM), dtype=np.float32)
            out.append((jnp.asarray(rows), jnp.asarray(grads)))
        return out

    ours = jax_step(args.rows, rng)
    theirs = tensorflow_step(args.rows, rng)
    batch_1m = batches(args.rows)
    distinct = int(np.median([np.unique(np.asarray(r)).size for r, _ in batch_1m]))
    if theirs is None:
        ms = paired_medians(ours, lambda b: None, batch_1m, warmup)[0]
        report(
            "sparse_ftrl_step",
            ms,
            None,
            distinct_rows=distinct,
            tensorflow="not installed",
        )
    else:
        ms, base = paired_medians(ours, theirs, batch_1m, warmup)
        report(
            "sparse_ftrl_step", ms, base, distinct_rows=distinct, baseline="tensorflow"
        )

    bigger = jax_step(4 * args.rows, rng)
    ms_big, ms_1m = paired_medians(bigger, ours, batches(args.rows), warmup)
    report(
        "sparse_ftrl_step_4x_rows", ms_big, ms_1m, baseline="the same step on 1x rows"
    )


if __name__ == "__main__":
    main()
