"""The on-device hash, against numpy references written from the formulas."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptive_jax import ids
from adaptive_jax.ids import hashing

MASK32 = 0xFFFFFFFF


def fmix32_reference(x: int) -> int:
    """MurmurHash3's fmix32, in Python ints."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & MASK32
    return x ^ (x >> 16)


def test_fmix32_matches_the_reference():
    values = [0, 1, 2, 0xDEADBEEF, MASK32, 123456789]
    got = hashing.fmix32(jnp.asarray(values, jnp.uint32)).tolist()
    assert got == [fmix32_reference(v) for v in values]


def test_fmix32_is_a_bijection_on_a_sample():
    values = jnp.arange(100_000, dtype=jnp.uint32) * jnp.uint32(40_503)
    assert np.unique(np.asarray(hashing.fmix32(values))).size == 100_000


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 65_537, 2**31 - 1, 2**31])
def test_reduce_range_is_the_exact_high_word_of_the_product(n):
    rng = np.random.default_rng(n)
    h = np.concatenate([[0, 1, MASK32, 2**31], rng.integers(0, 2**32, 1000)])
    got = np.asarray(hashing.reduce_range(jnp.asarray(h, jnp.uint32), n))
    want = [(int(v) * n) >> 32 for v in h]
    assert got.tolist() == want


@pytest.mark.parametrize("n", [0, 2**31 + 1], ids=["zero", "too_big"])
def test_reduce_range_rejects_sizes_out_of_range(n):
    with pytest.raises(ValueError, match="reduce_range"):
        hashing.reduce_range(jnp.zeros(2, jnp.uint32), n)


def test_hash32_is_the_same_with_x64_on_and_off():
    values = [0, -1, 2**63 - 1, -(2**63), 42]
    off = hashing.hash32(ids.from_numpy(values), seed=3)
    with jax.enable_x64(True):
        on = jax.jit(lambda v: hashing.hash32(ids.as_ids(v), seed=3))(
            jnp.asarray(values, jnp.int64)
        )
    assert off.tolist() == on.tolist()


def test_seeds_give_different_hashes():
    keys = ids.from_numpy(np.arange(1000))
    a, b = hashing.hash32(keys, 1), hashing.hash32(keys, 2)
    assert int(jnp.sum(a == b)) < 3


# TensorFlow's buckets, from known answers that TensorFlow 2.21 computed.

KNOWN = json.loads(
    (pathlib.Path(__file__).parent / "data/hash_tf_known_answers.json").read_text()
)
BUCKET_COUNTS = [1, 100, 1_000_003, 2**63 - 1]


@pytest.mark.parametrize("num_buckets", BUCKET_COUNTS)
def test_string_buckets_equal_tensorflow(num_buckets):
    want = KNOWN[f"strings_{num_buckets}"]
    assert hashing.to_hash_bucket_fast(KNOWN["strings"], num_buckets).tolist() == want
    as_bytes = [s.encode("utf-8") for s in KNOWN["strings"]]
    assert hashing.to_hash_bucket_fast(as_bytes, num_buckets).tolist() == want
    as_array = np.array(KNOWN["strings"])
    assert hashing.to_hash_bucket_fast(as_array, num_buckets).tolist() == want


@pytest.mark.parametrize("num_buckets", BUCKET_COUNTS)
def test_int_buckets_equal_tensorflow_through_the_decimal_string(num_buckets):
    want = KNOWN[f"ints_{num_buckets}"]
    values = np.array(KNOWN["ints"], np.int64)
    assert hashing.to_hash_bucket_fast(values, num_buckets).tolist() == want
    assert hashing.to_hash_bucket_fast(KNOWN["ints"], num_buckets).tolist() == want


def test_fingerprint64_is_uint64_and_reduces_to_the_buckets():
    prints = hashing.fingerprint64(KNOWN["strings"])
    assert prints.dtype == np.uint64
    assert (prints % np.uint64(100)).tolist() == KNOWN["strings_100"]


def test_string_to_key_is_deeprecs_embedding_variable_key():
    keys = hashing.string_to_key(KNOWN["strings"])
    assert keys.dtype == np.int64
    assert keys.tolist() == KNOWN[f"strings_{2**63 - 1}"]


def test_hashing_keeps_the_shape():
    values = np.array([["a", "b", "c"], ["d", "", "f"]])
    buckets = hashing.to_hash_bucket_fast(values, 7)
    assert buckets.shape == (2, 3)
    assert buckets[1, 1] == hashing.to_hash_bucket_fast([""], 7)[0]


@pytest.mark.parametrize(
    "values",
    [np.array([1.5, 2.0]), np.array([True]), [1.5], [None], [True]],
    ids=["float_array", "bool_array", "float_list", "none_list", "bool_list"],
)
def test_hashing_non_ids_raises_type_error(values):
    with pytest.raises(TypeError, match="strings, bytes or integers"):
        hashing.to_hash_bucket_fast(values, 10)


@pytest.mark.parametrize(
    "num_buckets", [0, -1, 2**63, 2.0], ids=["0", "-1", "2**63", "float"]
)
def test_bad_num_buckets_raises(num_buckets):
    with pytest.raises(ValueError, match="num_buckets"):
        hashing.to_hash_bucket_fast(["a"], num_buckets)


# The device hash spreads ids evenly.


def chi_square(buckets: np.ndarray, num_buckets: int) -> float:
    counts = np.bincount(buckets, minlength=num_buckets)
    expected = buckets.size / num_buckets
    return float(np.sum((counts - expected) ** 2) / expected)


ID_PATTERNS = {
    "sequential": np.arange(200_000, dtype=np.int64),
    "negative": -np.arange(200_000, dtype=np.int64),
    "stride_1024": np.arange(200_000, dtype=np.int64) * 1024,
    "stride_2_32": np.arange(200_000, dtype=np.int64) << 32,
    "stride_2_32_plus_1": np.arange(200_000, dtype=np.int64) * (2**32 + 1),
    "near_int64_max": np.int64(2**63 - 1) - np.arange(200_000, dtype=np.int64),
}


@pytest.mark.parametrize("pattern", sorted(ID_PATTERNS))
@pytest.mark.parametrize("fn", ["bucket", "partition"])
def test_device_hash_is_uniform(pattern, fn):
    num_buckets = 1000
    keys = ids.from_numpy(ID_PATTERNS[pattern])
    buckets = np.asarray(
        jax.jit(getattr(hashing, fn), static_argnums=1)(keys, num_buckets)
    )
    assert buckets.min() >= 0 and buckets.max() < num_buckets
    # Chi-square with 999 degrees of freedom: mean 999, standard deviation 44.7;
    # six deviations above the mean happen by chance about once in 10**9.
    assert chi_square(buckets, num_buckets) < 999 + 6 * 44.7
