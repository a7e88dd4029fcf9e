"""A fast integer hash of int64 ids on device, for buckets, tags and partitions.

It works on the two uint32 words of an `Ids`, so it runs with x64 off and on and
gives the same answer in both. It chains MurmurHash3's 32-bit finaliser (`fmix32`,
a bijection of uint32 with full avalanche) over the two words, seeded, so that
differently seeded hashes of the same id are independent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import ids as ids_lib

# 2**32 / golden ratio (odd): consecutive seeds give well-spread salts.
_SEED_STRIDE = 0x9E3779B9
_SEED_OFFSET = 0x7F4A7C15
_PARTITION_SEED = 0x5EED
VIRTUAL_BUCKETS = 2**16  # partitions own whole virtual buckets


def fmix32(x: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche.
    On jax or numpy uint32 arrays (the synthetic data generator uses it too)."""
    uint32 = x.dtype.type
    x = x ^ (x >> uint32(16))
    x = x * uint32(0x85EBCA6B)
    x = x ^ (x >> uint32(13))
    x = x * uint32(0xC2B2AE35)
    return x ^ (x >> uint32(16))


def hash32(ids: ids_lib.Ids, seed: int) -> jax.Array:
    """A 32-bit hash of int64 ids, one independent function per seed.

    For a fixed `hi` word the hash is a bijection of `lo`, so ids that differ only
    in their low 32 bits (sequential ids, say) never collide.

    Args:
      ids: the ids, any shape.
      seed: a Python int that selects the hash function.

    Returns:
      `uint32` array of the shape of `ids`.
    """
    salt = jnp.uint32((seed * _SEED_STRIDE + _SEED_OFFSET) & 0xFFFFFFFF)
    return fmix32(ids.lo ^ fmix32(ids.hi ^ salt))


def reduce_range(hashes: jax.Array, n: int) -> jax.Array:
    """Maps uint32 hashes onto `[0, n)` without modulo bias: `(h * n) >> 32`.

    The 32x32 -> 64 bit product is formed from 16-bit halves, so no 64-bit type is
    needed.

    Args:
      hashes: `uint32` array.
      n: a Python int in `[1, 2**31]`.

    Returns:
      `int32` array in `[0, n)`, shape of `hashes`.
    """
    if not 1 <= n <= 2**31:
        raise ValueError(f"reduce_range: n must be in [1, 2**31], got {n}")
    h_hi, h_lo = hashes >> 16, hashes & 0xFFFF
    n_hi, n_lo = jnp.uint32(n >> 16), jnp.uint32(n & 0xFFFF)
    lo_lo, hi_lo, lo_hi = h_lo * n_lo, h_hi * n_lo, h_lo * n_hi
    carry = ((lo_lo >> 16) + (hi_lo & 0xFFFF) + (lo_hi & 0xFFFF)) >> 16
    high_word = h_hi * n_hi + (hi_lo >> 16) + (lo_hi >> 16) + carry
    return high_word.astype(jnp.int32)


def bucket(ids: ids_lib.Ids, num_buckets: int, *, seed: int = 0) -> jax.Array:
    """On-device bucket of int64 ids: `reduce_range(hash32(ids, seed), num_buckets)`.

    Example:
      >>> import numpy as np
      >>> from adaptive_jax import ids, hashing
      >>> b = hashing.bucket(ids.from_numpy(np.arange(5)), 10)
      >>> bool(((0 <= b) & (b < 10)).all())
      True
    """
    return reduce_range(hash32(ids, seed), num_buckets)


def virtual_bucket(ids: ids_lib.Ids) -> jax.Array:
    """The virtual bucket of int64 ids, in `[0, VIRTUAL_BUCKETS)`: fixed for a key,
    whatever the number of partitions."""
    return bucket(ids, VIRTUAL_BUCKETS, seed=_PARTITION_SEED)


def partition(ids: ids_lib.Ids, num_partitions: int) -> jax.Array:
    """On-device partition of int64 ids, in `[0, num_partitions)`.

    Virtual bucket `b` belongs to partition `b * num_partitions // VIRTUAL_BUCKETS`,
    so that another number of partitions moves whole virtual buckets. Independent
    of `bucket` with any other seed, so that the ids of one partition still spread
    over all the buckets of a table.

    Raises:
      ValueError: `num_partitions` is not in `[1, VIRTUAL_BUCKETS]`.
    """
    if not 1 <= num_partitions <= VIRTUAL_BUCKETS:
        raise ValueError(
            f"num_partitions must be in [1, {VIRTUAL_BUCKETS}], got {num_partitions}"
        )
    scaled = virtual_bucket(ids).astype(jnp.uint32) * jnp.uint32(num_partitions)
    return (scaled // VIRTUAL_BUCKETS).astype(jnp.int32)
