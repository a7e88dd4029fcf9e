"""The on-device hash, against numpy references written from the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptive_jax import hashing, ids

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
