"""Writes `tests/data/optim_tf_known_answers.json`: what TensorFlow computes.

Run once, with TensorFlow installed (`pip install .[bench]`):
`python tools/tf_known_answers.py`. The tests read the file and never import
TensorFlow.

Cases (float32, a fixed seed):
- `sparse_ftrl`: `tf.compat.v1.train.FtrlOptimizer` on `tf.IndexedSlices` with
  repeated rows (TensorFlow sums the repeats, then `ResourceSparseApplyFtrl(V2)`
  updates the distinct rows only), per-coordinate L1;
- `dense_adagrad`, `sparse_adagrad`: `tf.compat.v1.train.AdagradOptimizer`
  (`ApplyAdagrad`, no epsilon), dense, and sparse with repeated rows;
- `ftrl_nan`: one dense FTRL step with a NaN gradient entry.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
OUT = pathlib.Path(__file__).parent.parent / "tests/data/optim_tf_known_answers.json"
ROWS, DIM, STEPS = 6, 3, 4


def run(optimizer, table, steps):
    """Applies `steps` (row ids, row gradients) with `optimizer`, in graph mode."""
    graph = tf.Graph()
    with graph.as_default():
        var = tf.compat.v1.get_variable("var", initializer=table, use_resource=True)
        rows = tf.compat.v1.placeholder(tf.int32, [None])
        grads = tf.compat.v1.placeholder(tf.float32, [None, DIM])
        slices = tf.IndexedSlices(grads, rows, tf.constant([ROWS, DIM]))
        train = optimizer().apply_gradients([(slices, var)])
        after = []
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for step_rows, step_grads in steps:
                session.run(train, {rows: step_rows, grads: step_grads})
                after.append(session.run(var).tolist())
    return after


def run_dense(optimizer, table, grads_per_step):
    graph = tf.Graph()
    with graph.as_default():
        var = tf.compat.v1.get_variable("var", initializer=table, use_resource=True)
        grads = tf.compat.v1.placeholder(tf.float32, table.shape)
        train = optimizer().apply_gradients([(grads, var)])
        after = []
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for step_grads in grads_per_step:
                session.run(train, {grads: step_grads})
                after.append(session.run(var).tolist())
    return after


def main() -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    steps = []
    for _ in range(STEPS):
        rows = rng.integers(0, ROWS - 1, 8).astype(np.int32)  # the last row: never
        steps.append(
            (rows.tolist(), rng.standard_normal((8, DIM)).astype(np.float32).tolist())
        )
    dense_grads = [
        rng.standard_normal((ROWS, DIM)).astype(np.float32).tolist()
        for _ in range(STEPS)
    ]
    ftrl_config = dict(
        learning_rate=0.1,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.3,
        l2_regularization_strength=0.01,
        l2_shrinkage_regularization_strength=0.05,
    )
    adagrad_config = dict(learning_rate=0.2, initial_accumulator_value=0.1)

    def ftrl():
        return tf.compat.v1.train.FtrlOptimizer(**ftrl_config)

    def adagrad():
        return tf.compat.v1.train.AdagradOptimizer(**adagrad_config)

    nan_grads = np.ones((2, DIM), np.float32)
    nan_grads[0, 1] = np.nan
    cases = {
        "source": f"TensorFlow {tf.__version__}, tf.compat.v1.train optimizers",
        "table": table.tolist(),
        "sparse_steps": steps,
        "dense_grads": dense_grads,
        "ftrl_config": ftrl_config,
        "adagrad_config": adagrad_config,
        "sparse_ftrl": run(ftrl, table, steps),
        "sparse_adagrad": run(adagrad, table, steps),
        "dense_adagrad": run_dense(adagrad, table, dense_grads),
        "ftrl_nan": {
            "w0": table[:2].tolist(),
            "grad": [[str(g) for g in row] for row in nan_grads.tolist()],
            "after": [
                [str(v) for v in row]
                for row in run_dense(ftrl, table[:2], [nan_grads])[0]
            ],
        },
    }
    OUT.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
