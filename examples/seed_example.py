"""DeepRec's adaptive-embedding seed program, ported line for line to adaptive_jax.

Run: `python examples/seed_example.py` (`make demo` runs it too).

The original, in DeepRec (TensorFlow 1):

    columns = tf.feature_column.categorical_column_with_adaptive_embedding(
        "col_emb", hash_bucket_size=100, dtype=tf.int64)
    W = tf.feature_column.embedding_column(
        categorical_column=columns, dimension=3,
        initializer=tf.ones_initializer(tf.dtypes.float32))
    ids = {}
    ids["col_emb"] = tf.SparseTensor(
        indices=[[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [6, 0], [7, 0],
                 [8, 0], [9, 0]],
        values=tf.cast([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], tf.dtypes.int64),
        dense_shape=[10, 1])
    adaptive_mask_tensors = {"col_emb": tf.constant([1, 0, 1, 0, 1, 0, 0, 1, 0, 1])}
    emb = tf.feature_column.input_layer(
        ids, [W], adaptive_mask_tensors=adaptive_mask_tensors)
    fun = tf.multiply(emb, 2.0)
    loss = tf.reduce_sum(fun)
    opt = tf.train.FtrlOptimizer(
        0.1, l1_regularization_strength=2.0, l2_regularization_strength=0.00001)
    g_v = opt.compute_gradients(loss)
    train_op = opt.apply_gradients(g_v)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(4):
            r, _, l = sess.run([emb, train_op, loss])
        print(r)
        print(l)

Ids with mask 1 go to the dynamic table, starting from their static bucket's
value (ones); the others stay in their buckets, `Fingerprint64(str(id)) % 100`.
Each `sess.run` fetches `emb` and `loss` before its own update, so the fourth
run prints the embeddings after three updates: TensorFlow's FTRL on the
static buckets, DeepRec's row-wise FTRL on the dynamic rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import adaptive_jax as aj
from adaptive_jax import feature_column as fc


def main() -> tuple[np.ndarray, float]:
    # DeepRec's migration: a promoted id starts from its whole bucket, with
    # fresh optimizer slots (adaptive_jax's default, "fitted", measures first).
    columns = fc.categorical_column_with_adaptive_embedding(
        "col_emb", hash_bucket_size=100, dtype="int64", migration="deeprec"
    )
    W = fc.embedding_column(
        categorical_column=columns, dimension=3, initializer=aj.initializers.ones()
    )
    ids = {}
    ids["col_emb"] = aj.sparse.from_coo(
        indices=[
            [0, 0],
            [1, 0],
            [2, 0],
            [3, 0],
            [4, 0],
            [5, 0],
            [6, 0],
            [7, 0],
            [8, 0],
            [9, 0],
        ],
        values=np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], np.int64),
        dense_shape=[10, 1],
    )
    adaptive_mask_tensors = {"col_emb": np.array([1, 0, 1, 0, 1, 0, 0, 1, 0, 1])}
    opt = aj.optim.ftrl(
        0.1, l1_regularization_strength=2.0, l2_regularization_strength=0.00001
    )

    @jax.jit
    def sess_run(state, features):
        """One `sess.run([emb, train_op, loss])`: emb and loss before the update."""
        emb, state, residuals = fc.input_layer(features, [W], state, optimizer=opt)
        loss, d_emb = jax.value_and_grad(lambda e: jnp.sum(jnp.multiply(e, 2.0)))(emb)
        state = fc.apply_gradients(state, residuals, d_emb, [W], opt)
        return emb, state, loss

    state = fc.init_state([W], opt, jax.random.key(0))
    features = fc.prepare(ids, [W], adaptive_mask_tensors=adaptive_mask_tensors)
    for _ in range(4):
        r, state, loss = sess_run(state, features)
    print(np.asarray(r))
    print(float(loss))
    return np.asarray(r), float(loss)


if __name__ == "__main__":
    main()
