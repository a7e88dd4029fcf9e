"""Bad raw input on the host, refused by name before anything is hashed: ids,
masks, sparse indices, weights, and sizes from NumPy."""

import jax
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import export, optim, sparse
from adaptive_jax import feature_column as fc

OPT = optim.ftrl(0.1)


def make(dtype: str = "int64") -> fc.EmbeddingColumn:
    categorical = fc.categorical_column_with_adaptive_embedding(
        "c", 4, dtype, ev_option=aj.EmbeddingVariableOption(capacity=8)
    )
    return fc.embedding_column(categorical, 2)


BASE = make()


HOST_INPUTS = {
    "mask_2": ({"c": [[1], [2]]}, {"c": [2, 0]}, ValueError, "\\['c'\\]\\[0\\] is 2"),
    "mask_minus_1": ({"c": [[1], [2]]}, {"c": [1, -1]}, ValueError, "\\[1\\] is -1"),
    "float_ids": ({"c": [[1.5], [2.0]]}, {"c": [1, 0]}, TypeError, "got float"),
    "bool_ids": ({"c": [[True], [False]]}, {"c": [1, 0]}, TypeError, "got bool"),
    "float_dense": ({"c": np.array([1.5, 2.0])}, {"c": [1, 0]}, TypeError, "float64"),
    "int_past_int64": (
        {"c": [[2**64], [1]]},
        {"c": [1, 0]},
        OverflowError,
        "id 18446744073709551616 is outside int64",
    ),
    "int_below_int64": ({"c": [[-(2**63) - 1]]}, {"c": [1]}, OverflowError, "int64"),
    "strings_for_ints": ({"c": [["a"], ["b"]]}, {"c": [1, 0]}, ValueError, "strings"),
    "mixed": ({"c": [["a"], [1]]}, {"c": [1, 0]}, TypeError, "mix strings"),
}


@pytest.mark.parametrize(
    ("features", "masks", "error", "match"),
    list(HOST_INPUTS.values()),
    ids=list(HOST_INPUTS),
)
def test_bad_ids_and_masks_are_refused_naming_the_column(features, masks, error, match):
    with pytest.raises(error, match="column 'c'"):
        fc.prepare(features, [BASE], adaptive_mask_tensors=masks)
    with pytest.raises(error, match=match):
        fc.prepare(features, [BASE], adaptive_mask_tensors=masks)


class Coo:
    """A `tf.SparseTensor`-like value."""

    def __init__(self, indices, values, dense_shape):
        self.indices, self.values, self.dense_shape = indices, values, dense_shape


@pytest.mark.parametrize(
    "indices",
    [[[0, 0], [5, 0]], [[0, 0], [1, 3]], [[-1, 0], [1, 0]]],
    ids=["row_past_batch", "position_past_width", "negative"],
)
def test_sparse_indices_outside_the_dense_shape_name_the_column(indices):
    feature = Coo(np.array(indices), np.array([1, 2]), np.array([2, 1]))
    with pytest.raises(ValueError, match="column 'c': indices\\[\\d\\] = .* outside"):
        fc.prepare({"c": feature}, [BASE], adaptive_mask_tensors={"c": [1, 0]})


@pytest.mark.parametrize(
    "feature",
    [
        np.array([[2**40], [1]]),
        [[1], [-(2**31) - 1]],
        Coo(np.array([[0, 0]]), np.array([2**31]), [1, 1]),
    ],
    ids=["dense", "ragged", "coo"],
)
def test_an_int32_column_refuses_ids_past_int32(feature):
    column = make(dtype="int32")
    n = 1 if isinstance(feature, Coo) else 2
    with pytest.raises(ValueError, match="column 'c' has dtype int32, but its id"):
        fc.prepare({"c": feature}, [column], adaptive_mask_tensors={"c": [1] * n})
    ok = {"c": np.array([[2**31 - 1], [-(2**31)]])}
    fc.prepare(ok, [column], adaptive_mask_tensors={"c": [1, 0]})


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_weights_that_are_not_finite_are_refused(bad):
    with pytest.raises(ValueError, match="weights must be finite numbers"):
        sparse.from_ragged([[1, 2]], weights=[[1.0, bad]])


# Sizes from NumPy.


def test_numpy_integer_sizes_are_taken_as_ints():
    i = np.int64
    option = aj.EmbeddingVariableOption(
        capacity=i(8),
        filter_option=aj.CounterFilter(i(2), max_element_size=i(64)),
        evict_option=aj.GlobalStepEvict(i(3)),
        init_option=aj.InitializerOption(default_value_dim=i(16)),
    )
    categorical = fc.categorical_column_with_adaptive_embedding(
        "c", i(4), "int64", i(2), ev_option=option
    )
    column = fc.embedding_column(categorical, np.int32(2))
    plain = fc.embedding_column(
        fc.categorical_column_with_adaptive_embedding(
            "c",
            4,
            "int64",
            2,
            ev_option=aj.EmbeddingVariableOption(
                capacity=8,
                filter_option=aj.CounterFilter(2, max_element_size=64),
                evict_option=aj.GlobalStepEvict(3),
                init_option=aj.InitializerOption(default_value_dim=16),
            ),
        ),
        2,
    )
    assert column == plain and hash(column) == hash(plain)
    assert type(column.dimension) is int and type(option.capacity) is int
    state = fc.init_state([column], OPT, jax.random.key(0))
    state = fc.maybe_evict(state, [column], OPT, every=i(2))
    export.export(state, [column], top_k=i(3))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fc.categorical_column_with_hash_bucket("c", np.float64(4)), "hash_b"),
        (lambda: fc.categorical_column_with_hash_bucket("c", True), "hash_bucket"),
        (lambda: fc.embedding_column("c", 2), "categorical_column must be a column"),
        (lambda: fc.categorical_column_with_hash_bucket("", 4), "non-empty str"),
        (lambda: fc.categorical_column_with_embedding(3), "non-empty str"),
    ],
    ids=["float_buckets", "bool_buckets", "not_a_column", "empty_key", "int_key"],
)
def test_sizes_and_keys_of_other_kinds_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
