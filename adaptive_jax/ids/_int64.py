"""Int64 ids in JAX, with or without x64.

With `jax_enable_x64` off (JAX's default) a JAX array holds no 64-bit integers, and
an int64 numpy array passed to a jitted function is silently narrowed to int32. So
an id crosses into JAX as two uint32 words, `Ids(hi, lo)`: exact over the whole
int64 range (0, -1, INT64_MIN and INT64_MAX included) in both modes.

Build `Ids` on the host with `from_numpy`, before calling a jitted function; inside
one, `as_ids` also takes 32-bit integer arrays (sign-extended) and, with x64 on,
int64 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_WORD = 32
_LOW_MASK = 0xFFFFFFFF


@struct.dataclass
class Ids:
    """Int64 ids as two uint32 words: `id = (hi << 32) | lo`, two's complement.

    Attributes:
      hi: `[...] uint32`, bits 63..32 of each id.
      lo: `[...] uint32`, bits 31..0 of each id, same shape as `hi`.
    """

    hi: jax.Array
    lo: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape

    @property
    def size(self) -> int:
        return self.hi.size

    def reshape(self, *shape: int) -> Ids:
        return Ids(self.hi.reshape(*shape), self.lo.reshape(*shape))

    def __getitem__(self, index: Any) -> Ids:
        return Ids(self.hi[index], self.lo[index])


IdsLike: TypeAlias = "Ids | jax.Array | np.ndarray | Sequence[int]"
"""What functions that take ids accept; see `as_ids`."""


def _check_integer_dtype(dtype: np.dtype, what: str) -> None:
    if not (np.issubdtype(dtype, np.integer) and dtype != np.bool_):
        raise TypeError(
            f"{what} must be integer ids (int64, int32, uint32, ...), got dtype "
            f"{dtype}; hash float or string features to ids first"
        )


def from_numpy(values: np.ndarray | Sequence[int]) -> Ids:
    """Splits int64 ids on the host, exactly, into `Ids` of JAX uint32 arrays.

    Args:
      values: an array-like of integers: a numpy array of any integer dtype (a
        uint64 array, of hashes say, keeps its 64 bits: values above INT64_MAX
        become the negative int64 of the same bits), or Python ints.

    Returns:
      `Ids` with the shape of `values`.

    Raises:
      TypeError: `values` is not integer (floats, bools, strings, objects).
      OverflowError: a Python int outside the int64 range.

    Example:
      >>> ids = from_numpy([0, -1, 2**63 - 1])
      >>> to_numpy(ids).tolist()
      [0, -1, 9223372036854775807]
    """
    words = split(values)
    return Ids(jnp.asarray(words.hi), jnp.asarray(words.lo))


def split(values: np.ndarray | Sequence[int]) -> Ids:
    """`from_numpy` without leaving the host: `Ids` of numpy uint32 arrays,
    which a jitted function takes as they are (a batch prepared on the host,
    to be moved to the device in one go by the step or by `jax.device_put`).

    Raises:
      TypeError, OverflowError: as `from_numpy`.
    """
    array = np.asarray(values)
    if not isinstance(values, np.ndarray) and array.dtype.kind in "uO":
        array = np.asarray(values, dtype=np.int64)  # Python ints beyond int64 raise
    _check_integer_dtype(array.dtype, "ids")
    bits = array.astype(np.int64).view(np.uint64)
    hi = (bits >> np.uint64(_WORD)).astype(np.uint32)
    return Ids(hi, bits.astype(np.uint32))  # the cast keeps the low 32 bits


def to_numpy(ids: Ids) -> np.ndarray:
    """Joins `Ids` back into a numpy int64 array, on the host."""
    hi = np.asarray(ids.hi).astype(np.uint64)
    lo = np.asarray(ids.lo).astype(np.uint64)
    return ((hi << np.uint64(_WORD)) | lo).view(np.int64)


def as_ids(values: IdsLike) -> Ids:
    """Returns `values` as `Ids`; works inside `jax.jit`.

    Args:
      values: `Ids`; a JAX integer array (signed types are sign-extended, unsigned
        ones zero-extended; int64 and uint64 need x64 on); or a numpy array or list
        of ints, split exactly on the host as `from_numpy` does.

    Raises:
      TypeError: float, bool or other non-integer values; the message names the
        dtype.
    """
    if isinstance(values, Ids):
        return values
    if not isinstance(values, jax.Array):
        return from_numpy(values)
    _check_integer_dtype(np.dtype(values.dtype), "ids")
    if values.dtype.itemsize == 8:
        bits = values.astype(jnp.uint64)
        hi = (bits >> _WORD).astype(jnp.uint32)
        return Ids(hi, bits.astype(jnp.uint32))
    lo = values.astype(jnp.uint32)
    if jnp.issubdtype(values.dtype, jnp.signedinteger):
        hi = jnp.where(values < 0, jnp.uint32(_LOW_MASK), jnp.uint32(0))
    else:
        hi = jnp.zeros_like(lo)
    return Ids(hi, lo)


def as_int64(ids: Ids) -> jax.Array:
    """Joins `Ids` into a JAX int64 array; works inside `jax.jit`, needs x64 on.

    Raises:
      ValueError: x64 is off, so JAX has no int64 array to give.
    """
    if not jax.config.jax_enable_x64:
        raise ValueError(
            "as_int64 needs jax_enable_x64 (or `with jax.enable_x64(True):`); "
            "with x64 off, keep ids as Ids, or use to_numpy on the host"
        )
    bits = (ids.hi.astype(jnp.uint64) << _WORD) | ids.lo.astype(jnp.uint64)
    return jax.lax.bitcast_convert_type(bits, jnp.int64)


def remainder(ids: Ids, divisor: int) -> jax.Array:
    """The ids, read as unsigned 64-bit numbers, modulo `divisor`; works in jit.

    Long division by 16-bit digits, in uint32 arithmetic.

    Args:
      ids: the ids.
      divisor: a Python int in `[1, 65536]`.

    Returns:
      `int32` array in `[0, divisor)`, the shape of `ids`.
    """
    if not 1 <= divisor <= 65536:
        raise ValueError(f"remainder: divisor must be in [1, 65536], got {divisor}")
    m = jnp.uint32(divisor)
    rest = jnp.zeros_like(ids.lo)
    for digit in (ids.hi >> 16, ids.hi & 0xFFFF, ids.lo >> 16, ids.lo & 0xFFFF):
        rest = ((rest << 16) | digit) % m
    return rest.astype(jnp.int32)


def equal(a: Ids, b: Ids) -> jax.Array:
    """Elementwise `a == b` over both words."""
    return (a.hi == b.hi) & (a.lo == b.lo)
