"""Int64 ids cross into JAX exactly, with x64 off and on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptive_jax import ids

INT64_MIN, INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
EXTREMES = [0, 1, -1, 2**31 - 1, -(2**31), 2**32, -(2**32), INT64_MIN, INT64_MAX]


def test_from_numpy_round_trips_the_whole_int64_range():
    values = np.array(EXTREMES + list(range(-50, 50)), np.int64)
    got = ids.to_numpy(ids.from_numpy(values))
    np.testing.assert_array_equal(got, values)


def test_from_numpy_splits_into_two_uint32_words():
    split = ids.from_numpy([-1, 2**32 + 5, INT64_MIN])
    assert split.hi.dtype == jnp.uint32 and split.lo.dtype == jnp.uint32
    assert split.hi.tolist() == [0xFFFFFFFF, 1, 0x80000000]
    assert split.lo.tolist() == [0xFFFFFFFF, 5, 0]


def test_from_numpy_keeps_the_shape():
    values = np.arange(12, dtype=np.int64).reshape(3, 4) - 6
    split = ids.from_numpy(values)
    assert split.shape == (3, 4)
    np.testing.assert_array_equal(ids.to_numpy(split), values)


def test_python_ints_out_of_int64_range_raise():
    with pytest.raises(OverflowError):
        ids.from_numpy([2**63])


@pytest.mark.parametrize(
    "values",
    [np.array([1.0, 2.0]), np.array([True, False]), np.array(["a"])],
    ids=["float64", "bool", "str"],
)
def test_non_integer_ids_raise_type_error_naming_the_dtype(values):
    with pytest.raises(TypeError, match=str(values.dtype)):
        ids.from_numpy(values)


def test_as_ids_rejects_float_jax_arrays():
    with pytest.raises(TypeError, match="float32"):
        ids.as_ids(jnp.zeros(3, jnp.float32))


def test_as_ids_sign_extends_signed_32_bit_arrays():
    values = jnp.array([-1, 0, 7, -(2**31)], jnp.int32)
    got = ids.to_numpy(jax.jit(ids.as_ids)(values))
    np.testing.assert_array_equal(got, [-1, 0, 7, -(2**31)])


def test_as_ids_zero_extends_unsigned_arrays():
    values = jnp.array([0xFFFFFFFF, 3], jnp.uint32)
    np.testing.assert_array_equal(ids.to_numpy(ids.as_ids(values)), [2**32 - 1, 3])


def test_as_ids_splits_int64_arrays_when_x64_is_on():
    values = np.array(EXTREMES, np.int64)
    with jax.enable_x64(True):
        split = jax.jit(ids.as_ids)(jnp.asarray(values))
        assert split.hi.dtype == jnp.uint32
    np.testing.assert_array_equal(ids.to_numpy(split), values)


def test_as_ids_takes_numpy_int64_exactly_with_x64_off():
    values = np.array(EXTREMES, np.int64)
    np.testing.assert_array_equal(ids.to_numpy(ids.as_ids(values)), values)


def test_ids_are_a_pytree_that_slices():
    split = ids.from_numpy([5, -6, 7])
    leaves = jax.tree.leaves(split)
    assert len(leaves) == 2
    assert ids.to_numpy(split[1:]).tolist() == [-6, 7]
    assert ids.equal(split, ids.from_numpy([5, 6, 7])).tolist() == [True, False, True]


def test_as_int64_joins_the_words_with_x64_on_and_refuses_with_it_off():
    values = np.array(EXTREMES, np.int64)
    split = ids.from_numpy(values)
    with jax.enable_x64(True):
        joined = jax.jit(ids.as_int64)(split)
    np.testing.assert_array_equal(np.asarray(joined), values)
    with pytest.raises(ValueError, match="x64"):
        ids.as_int64(split)


@pytest.mark.parametrize("divisor", [1, 7, 4096, 65521, 65536])
def test_remainder_is_the_unsigned_64_bit_remainder(divisor):
    values = np.array(EXTREMES + [12345678901234, -98765], np.int64)
    got = jax.jit(ids.remainder, static_argnums=1)(ids.from_numpy(values), divisor)
    want = [int(v) % 2**64 % divisor for v in values.tolist()]
    assert got.tolist() == want
