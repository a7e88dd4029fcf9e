"""A batch of no examples (the end of a shard) is a valid step: `[0, width]`
embeddings, and a state unchanged but for its step counters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import optim, sparse

OPT = optim.ftrl(0.1)


class Coo:
    def __init__(self, indices, values, dense_shape):
        self.indices, self.values, self.dense_shape = indices, values, dense_shape


EMPTY = {
    "dense": lambda: np.zeros((0, 3), np.int64),
    "dense_1d": lambda: np.zeros((0,), np.int64),
    "ragged": lambda: [],
    "sparse_ids": lambda: sparse.from_ragged([]),
    "coo": lambda: Coo(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), [0, 4]),
}

COLUMNS = {
    "adaptive_masked": (
        fc.categorical_column_with_adaptive_embedding(
            "c", 5, "int64", ev_option=aj.EmbeddingVariableOption(capacity=8)
        ),
        True,
    ),
    "adaptive_admission": (
        fc.categorical_column_with_adaptive_embedding(
            "c",
            5,
            "int64",
            ev_option=aj.EmbeddingVariableOption(
                capacity=8, filter_option=aj.CounterFilter(2, max_element_size=64)
            ),
        ),
        False,
    ),
    "dynamic": (
        fc.categorical_column_with_embedding(
            "c", "int64", ev_option=aj.EmbeddingVariableOption(capacity=8)
        ),
        False,
    ),
    "static": (fc.categorical_column_with_hash_bucket("c", 5, "int64"), False),
    "partitioned": (
        fc.categorical_column_with_adaptive_embedding(
            "c", 5, "int64", 2, ev_option=aj.EmbeddingVariableOption(capacity=8)
        ),
        True,
    ),
}


def leaves(state):
    return {
        "/".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
    }


@pytest.mark.parametrize("form", list(EMPTY))
@pytest.mark.parametrize(
    ("categorical", "masked"), list(COLUMNS.values()), ids=list(COLUMNS)
)
def test_an_empty_batch_changes_only_the_step_counters(form, categorical, masked):
    column = fc.embedding_column(categorical, 2)
    state = fc.init_state([column], OPT, jax.random.key(0))
    # A step with ids first, so that the last step's counts are not zero.
    masks = {"c": [1, 0]} if masked else None
    _, state, residuals = fc.input_layer(
        {"c": [[1], [2]]}, [column], state, optimizer=OPT, adaptive_mask_tensors=masks
    )
    state = fc.apply_gradients(state, residuals, jnp.ones((2, 2)), [column], OPT)
    before = leaves(state["c_embedding"])
    masks = {"c": np.zeros(0, np.int32)} if masked else None
    emb, after, residuals = fc.input_layer(
        {"c": EMPTY[form]()},
        [column],
        state,
        optimizer=OPT,
        adaptive_mask_tensors=masks,
    )
    assert emb.shape == (0, 2)
    after = fc.apply_gradients(after, residuals, jnp.zeros((0, 2)), [column], OPT)
    after = leaves(after["c_embedding"])
    assert set(after) == set(before)
    for path, leaf in before.items():
        if path in ("step", "dynamic/table/step"):  # one each per partition
            np.testing.assert_array_equal(after[path], np.asarray(leaf) + 1)
        elif path == "stats/last_served":
            assert np.asarray(after[path]).tolist() == [0, 0, 0]
        else:
            np.testing.assert_array_equal(
                np.asarray(after[path]), np.asarray(leaf), path
            )
