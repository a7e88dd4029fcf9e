"""Sparse id inputs: conversions, padding, exact int64 ids, and few compiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptive_jax import ids
from adaptive_jax.ids import hashing, sparse

INT64_MIN, INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def dense_of(batch: sparse.SparseIds, missing: int = -1) -> np.ndarray:
    """The batch back as a dense numpy array, from its real entries."""
    indices, values, shape, _ = batch.to_numpy()
    out = np.full(tuple(shape), missing, np.int64)
    out[indices[:, 0], indices[:, 1]] = values
    return out


def test_from_dense_drops_missing_ids_and_keeps_positions():
    values = np.array([[5, -1, 6], [-1, -1, -1], [INT64_MIN, INT64_MAX, 0]])
    batch = sparse.from_dense(values)
    np.testing.assert_array_equal(dense_of(batch), values)
    assert batch.to_numpy()[1].tolist() == [5, 6, INT64_MIN, INT64_MAX, 0]
    assert batch.batch_size == 3 and batch.dense_shape.tolist() == [3, 3]


def test_from_dense_with_missing_none_keeps_minus_one_as_an_id():
    batch = sparse.from_dense(np.array([-1, 3]), missing=None)
    assert batch.to_numpy()[1].tolist() == [-1, 3]


def fingerprints(strings):
    return hashing.fingerprint64(strings).view(np.int64).tolist()


def test_from_dense_fingerprints_strings_and_skips_empty_ones():
    values = np.array([["user_1", ""], ["", "user_2"]])
    batch = sparse.from_dense(values)
    indices, prints, _, _ = batch.to_numpy()
    assert batch.strings
    assert indices.tolist() == [[0, 0], [1, 1]]
    assert prints.tolist() == fingerprints(["user_1", "user_2"])


def test_from_dense_takes_weights_of_the_present_ids():
    batch = sparse.from_dense([[1, -1], [2, 3]], weights=[[0.5, 9.0], [1.0, 2.0]])
    assert batch.to_numpy()[3].tolist() == [0.5, 1.0, 2.0]
    assert np.asarray(batch.weights)[~np.asarray(batch.valid)].tolist() == [0.0] * 5


def test_from_ragged_handles_empty_rows_and_weights():
    batch = sparse.from_ragged([[7, 8], [], [9]], weights=[[1.0, 2.0], [], [3.0]])
    indices, values, shape, weights = batch.to_numpy()
    assert indices.tolist() == [[0, 0], [0, 1], [2, 0]]
    assert values.tolist() == [7, 8, 9]
    assert shape.tolist() == [3, 2]
    assert weights.tolist() == [1.0, 2.0, 3.0]


def test_from_ragged_of_strings_and_bytes_fingerprints_like_tensorflow():
    batch = sparse.from_ragged([["a", "b"], [b"c"]])
    assert batch.strings
    assert batch.to_numpy()[1].tolist() == fingerprints(["a", "b", "c"])
    assert not sparse.from_ragged([[1]]).strings


def test_from_coo_round_trips_a_tf_sparse_tensor():
    indices = np.array([[0, 3], [2, 0], [2, 1]])
    batch = sparse.from_coo(indices, np.array([-5, 6, 2**40]), (4, 5))
    got_indices, values, shape, _ = batch.to_numpy()
    np.testing.assert_array_equal(got_indices, indices)
    assert values.tolist() == [-5, 6, 2**40] and shape.tolist() == [4, 5]


def test_padding_is_a_power_of_two_or_the_fixed_size_and_is_marked_invalid():
    batch = sparse.from_ragged([[1] * 9])
    assert batch.size == 16
    assert np.asarray(batch.valid).sum() == 9
    assert np.asarray(batch.row_ids)[9:].tolist() == [1] * 7  # batch_size: outside
    assert sparse.from_ragged([[1] * 9], size=10).size == 10
    assert sparse.from_ragged([[]]).size == sparse.MIN_SIZE


def test_padding_entries_fall_out_of_a_segment_sum():
    batch = sparse.from_ragged([[1, 2], [3]], weights=[[1.0, 1.0], [1.0]])
    per_row = jax.ops.segment_sum(jnp.ones(batch.size), batch.row_ids, batch.batch_size)
    assert per_row.tolist() == [2.0, 1.0]


def test_int64_ids_survive_the_trip_with_x64_on():
    values = [[INT64_MIN, -1], [0, INT64_MAX]]
    batch = sparse.from_ragged(values)
    with jax.enable_x64(True):
        got = jax.jit(ids.as_int64)(batch.values)[:4]
        assert got.dtype == jnp.int64
    assert got.tolist() == [INT64_MIN, -1, 0, INT64_MAX]


def test_a_stream_of_batches_compiles_a_handful_of_times():
    rng = np.random.default_rng(0)

    @jax.jit
    def ids_per_row(batch):
        ones = batch.valid.astype(jnp.int32)
        return jax.ops.segment_sum(ones, batch.row_ids, batch.batch_size)

    sizes = set()
    for _ in range(40):
        lengths = rng.integers(0, 30, 64)
        rows = [rng.integers(-(2**40), 2**40, n).tolist() for n in lengths]
        batch = sparse.from_ragged(rows)
        sizes.add(batch.size)
        assert ids_per_row(batch).tolist() == lengths.tolist()
    assert ids_per_row._cache_size() == len(sizes) <= 3


# Bad input.


def test_more_ids_than_the_fixed_size_raises_rather_than_truncating():
    with pytest.raises(ValueError, match="5 ids, more than size=4"):
        sparse.from_ragged([[1, 2, 3], [4, 5]], size=4)


def test_indices_outside_the_dense_shape_raise():
    with pytest.raises(ValueError, match=r"indices\[1\] = \[2, 5\] is outside"):
        sparse.from_coo([[0, 0], [2, 5]], [1, 2], (3, 5))


def test_values_and_indices_of_different_lengths_raise():
    with pytest.raises(ValueError, match="3 values for 2 indices"):
        sparse.from_coo([[0, 0], [1, 0]], [1, 2, 3], (2, 1))


def test_weights_and_values_of_different_lengths_raise():
    with pytest.raises(ValueError, match="row 1 has 1 ids but 2 weights"):
        sparse.from_ragged([[1], [2]], weights=[[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="2 weights for 3 ids"):
        sparse.from_coo([[0, 0], [1, 0], [1, 1]], [1, 2, 3], (2, 2), weights=[1, 2])
    with pytest.raises(ValueError, match="weights have shape"):
        sparse.from_dense([[1, 2]], weights=[1.0, 2.0])


@pytest.mark.parametrize(
    "rows",
    [[[1.5]], [[True]], [[None]], [[1, "a"]]],
    ids=["float", "bool", "none", "mixed"],
)
def test_ids_that_are_not_ints_or_strings_raise_type_error(rows):
    with pytest.raises(TypeError, match="ids"):
        sparse.from_ragged(rows)


def test_float_dense_ids_raise_type_error_naming_the_dtype():
    with pytest.raises(TypeError, match="float64"):
        sparse.from_dense(np.array([[1.0, 2.0]]))


def test_python_ints_outside_int64_raise():
    with pytest.raises(OverflowError):
        sparse.from_ragged([[2**63]])


def test_sparse_ids_are_a_pytree():
    batch = sparse.from_ragged([[1, 2]], weights=[[1.0, 2.0]])
    leaves, treedef = jax.tree.flatten(batch)
    assert (
        len(leaves) == 6
    )  # indices, values.hi, values.lo, valid, dense_shape, weights
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert rebuilt.batch_size == 1
    assert ids.to_numpy(rebuilt.values)[:2].tolist() == [1, 2]
