"""TensorFlow's bucket of an int64 id inside jit: `Fingerprint64(str(id)) % n`.

The host hashes an int id's decimal string (`_decimal`, `_farmhash`); this is
the same function on `Ids`, in uint32 arithmetic (a 64-bit word as a pair of
uint32), so that it runs with x64 off or on, on any backend, with no custom
call and no host callback. The id's magnitude becomes five groups of four
decimal digits by long division in 16-bit limbs; the digits, as ASCII, fill
bytes 4 to 23 of six uint32 words, so that every string ends at byte 24 (a
"-" replaces the "0" before a negative id's first digit). farmhash's cases
for 1-3, 4-7, 8-16 and 17-32 bytes (an int64's string has 1 to 20) are each
computed for every id, and the one its length takes is kept. Then the
fingerprint modulo the bucket count, by k bits at a time, each step a
Barrett reduction of a uint32.

Bit for bit the host's (`tests/test_device_fingerprint.py`: every length,
both signs, int64's extremes, TensorFlow's known answers), with x64 off or on.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adaptive_jax.ids._int64 import Ids

Pair = tuple[jax.Array, jax.Array]
"""A uint64 as `(hi, lo)` uint32 words."""

_U32 = jnp.uint32
_K0 = 0xC3A5C85C97CB3127
_K1 = 0xB492B66FBE98F273
_K2 = 0x9AE16A3B2F90404F
_ZERO_TO_MINUS = ord("0") ^ ord("-")


def _const(value: int) -> Pair:
    return _U32(value >> 32), _U32(value & 0xFFFFFFFF)


def _add(a: Pair, b: Pair) -> Pair:
    lo = a[1] + b[1]
    return a[0] + b[0] + (lo < a[1]).astype(_U32), lo


def _xor(a: Pair, b: Pair) -> Pair:
    return a[0] ^ b[0], a[1] ^ b[1]


def _shr(a: Pair, shift: int) -> Pair:
    """Logical shift right by a Python int in [1, 63]."""
    if shift >= 32:
        return jnp.zeros_like(a[0]), a[0] >> (shift - 32)
    return a[0] >> shift, (a[1] >> shift) | (a[0] << (32 - shift))


def _shl(a: Pair, shift: int) -> Pair:
    """Shift left by a Python int in [1, 63]."""
    if shift >= 32:
        return a[1] << (shift - 32), jnp.zeros_like(a[1])
    return (a[0] << shift) | (a[1] >> (32 - shift)), a[1] << shift


def _rotate(a: Pair, shift: int) -> Pair:
    """Rotate right by a Python int in [1, 63]."""
    right, left = _shr(a, shift), _shl(a, 64 - shift)
    return right[0] | left[0], right[1] | left[1]


def _mul_wide(a: jax.Array, b: jax.Array) -> Pair:
    """The 64-bit product of two uint32, from their 16-bit halves."""
    a0, a1, b0, b1 = a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16
    low, cross0, cross1 = a0 * b0, a0 * b1, a1 * b0
    middle = (low >> 16) + (cross0 & 0xFFFF) + (cross1 & 0xFFFF)
    hi = a1 * b1 + (cross0 >> 16) + (cross1 >> 16) + (middle >> 16)
    return hi, (low & 0xFFFF) | (middle << 16)


def _mul(a: Pair, b: Pair) -> Pair:
    """The product modulo 2**64."""
    hi, lo = _mul_wide(a[1], b[1])
    return hi + a[0] * b[1] + a[1] * b[0], lo


def _shift_mix(a: Pair) -> Pair:
    return _xor(a, _shr(a, 47))


def _hash_len16(u: Pair, v: Pair, mul: Pair) -> Pair:
    a = _shift_mix(_mul(_xor(u, v), mul))
    b = _shift_mix(_mul(_xor(v, a), mul))
    return _mul(b, mul)


def _divmod_e4(dividend: jax.Array) -> tuple[jax.Array, jax.Array]:
    quotient = lax.div(dividend, _U32(10_000))
    return quotient, dividend - quotient * 10_000


def _digit_groups(magnitude: Pair) -> list[jax.Array]:
    """The magnitude's five groups of four decimal digits, least significant
    first: long division by 10**4, the high word at once, then the low word
    in 16-bit limbs (each dividend below 10**4 * 2**16, a uint32); from the
    fourth group on the quotient fits in one word."""
    hi, lo = magnitude
    groups = []
    for _ in range(3):  # the quotient is below 2**64 / 10**12 < 2**25 after
        top, rest = _divmod_e4(hi)
        middle, rest = _divmod_e4((rest << 16) | (lo >> 16))
        bottom, rest = _divmod_e4((rest << 16) | (lo & 0xFFFF))
        groups.append(rest)
        hi, lo = top, (middle << 16) | bottom
    last, rest = _divmod_e4(lo)
    return [*groups, rest, last]


def _ascii(group: jax.Array) -> jax.Array:
    """A group below 10**4 as four ASCII digits, most significant first in
    memory (the word's low byte). Divisions by multiplying and shifting,
    exact in the ranges they see (the tests check every group)."""
    hundreds = (group * 5243) >> 19  # // 100 below 43,699
    tens = group - hundreds * 100
    d0 = (hundreds * 205) >> 11  # // 10 below 1,029
    d2 = (tens * 205) >> 11
    d1, d3 = hundreds - d0 * 10, tens - d2 * 10
    return (d0 | (d1 << 8) | (d2 << 16) | (d3 << 24)) + _U32(0x30303030)


def _num_digits(group: jax.Array) -> jax.Array:
    more = [(group >= bound).astype(_U32) for bound in (10, 100, 1000)]
    return 1 + more[0] + more[1] + more[2]


def _decimal(ids: Ids) -> tuple[list[jax.Array], jax.Array]:
    """`(words, length)`: the id's decimal string in bytes `[24 - length, 24)`
    of the six uint32 words (little-endian, as farmhash reads them)."""
    negative = ids.hi >> 31
    # Two's complement negation: ~x + 1, the carry into hi when lo is 0.
    minus_hi = ~ids.hi + (ids.lo == 0).astype(_U32)
    magnitude = (
        jnp.where(negative == 1, minus_hi, ids.hi),
        jnp.where(negative == 1, ~ids.lo + 1, ids.lo),
    )
    groups = _digit_groups(magnitude)
    digits = _num_digits(groups[0])
    for k, group in enumerate(groups[1:], start=1):
        digits = jnp.where(group > 0, 4 * k + _num_digits(group), digits)
    words = [jnp.zeros_like(ids.lo)] + [_ascii(g) for g in reversed(groups)]
    at = 23 - digits  # the "0" a negative id's "-" replaces
    minus = jnp.where(negative == 1, _U32(_ZERO_TO_MINUS) << ((at & 3) << 3), 0)
    for j in range(1, 6):
        words[j] = words[j] ^ jnp.where((at >> 2) == j, minus, 0)
    return words, digits + negative


def _funnel(low: jax.Array, high: jax.Array, shift: jax.Array) -> jax.Array:
    """The 32 bits `shift` (0 to 31) bits into the 64-bit `high:low`; every
    shift below 32 bits, as a shift of 32 or more is not the same everywhere."""
    return (low >> shift) | ((high << 1) << (31 - shift))


def _len1to3(words: list[jax.Array], length: jax.Array, start: jax.Array) -> Pair:
    last = words[5]  # the strings of 1-3 bytes start at byte 21-23
    a = (last >> (((start - 20) & 3) << 3)) & 0xFF
    b = (last >> (((start + (length >> 1) - 20) & 3) << 3)) & 0xFF
    c = last >> 24
    zero = jnp.zeros_like(last)
    y = (zero, a + (b << 8))
    z = (zero, length + (c << 2))
    mixed = _shift_mix(_xor(_mul(y, _const(_K2)), _mul(z, _const(_K0))))
    return _mul(mixed, _const(_K2))


def _len4to7(
    words: list[jax.Array], length: jax.Array, start: jax.Array, mul: Pair
) -> Pair:
    shift = (start & 3) << 3  # the strings of 4-7 bytes start at byte 17-20
    first = jnp.where(start >= 20, words[5], _funnel(words[4], words[5], shift))
    zero = jnp.zeros_like(first)
    u = _add((first >> 29, first << 3), (zero, length))
    return _hash_len16(u, (zero, words[5]), mul)


def _pick(j: jax.Array, options: Sequence[jax.Array], first: int) -> jax.Array:
    """`options[j - first]`, for `j` in `[first, first + len(options))`."""
    picked = options[-1]
    for k in range(len(options) - 2, -1, -1):
        picked = jnp.where(j == first + k, options[k], picked)
    return picked


def _len8to16(words: list[jax.Array], start: jax.Array, mul: Pair) -> Pair:
    shift = (start & 3) << 3  # the strings of 8-16 bytes start at byte 8-16
    w = [*words, jnp.zeros_like(start)]
    f = [_funnel(w[i], w[i + 1], shift) for i in (2, 3, 4, 5)]
    a = _add((_pick(start >> 2, f[1:], 2), _pick(start >> 2, f[:3], 2)), _const(_K2))
    b = (words[5], words[4])  # the last 8 bytes
    c = _add(_mul(_rotate(b, 37), mul), a)
    d = _mul(_add(_rotate(a, 25), b), mul)
    return _hash_len16(c, d, mul)


def _len17to32(words: list[jax.Array], start: jax.Array, mul: Pair) -> Pair:
    shift = (start & 3) << 3  # the strings of 17-20 bytes start at byte 4-7
    f = [_funnel(words[i], words[i + 1], shift) for i in (1, 2, 3, 4)]
    a = _mul((f[1], f[0]), _const(_K1))  # bytes 0-7
    b = (f[3], f[2])  # bytes 8-15
    c = _mul((words[5], words[4]), mul)  # the last 8 bytes
    d = _mul((words[3], words[2]), _const(_K2))  # the 8 before them
    return _hash_len16(
        _add(_add(_rotate(_add(a, b), 43), _rotate(c, 30)), d),
        _add(_add(a, _rotate(_add(b, _const(_K2)), 18)), c),
        mul,
    )


def fingerprint64(ids: Ids) -> Ids:
    """TensorFlow's `Fingerprint64` of each id's decimal string, as `Ids`
    (the 64 bits of the hash); the host's `hashing.fingerprint64` of the ints."""
    words, length = _decimal(ids)
    start = 24 - length
    mul = _add(_const(_K2), (jnp.zeros_like(length), length << 1))
    cases = (
        (3, _len1to3(words, length, start)),
        (7, _len4to7(words, length, start, mul)),
        (16, _len8to16(words, start, mul)),
    )
    hi, lo = _len17to32(words, start, mul)
    for longest, (case_hi, case_lo) in reversed(cases):
        hi = jnp.where(length <= longest, case_hi, hi)
        lo = jnp.where(length <= longest, case_lo, lo)
    return Ids(hi, lo)


def _barrett(x: jax.Array, divisor: jax.Array, magic: jax.Array) -> jax.Array:
    """`x % divisor` for `x < divisor * 2**k`, k >= 2 (so divisor <= 2**30),
    with `magic = (2**32 - 1) // divisor`: the estimate `x * magic >> 32` is
    the quotient or one less, so one subtraction corrects it."""
    quotient = _mul_wide(x, magic)[0]
    rest = x - quotient * divisor
    return jnp.where(rest >= divisor, rest - divisor, rest)


def modulo(values: Ids, divisors: Sequence[int], which: jax.Array | None) -> jax.Array:
    """`values` read as uint64, modulo `divisors[which]` (or the one divisor
    when `which` is None): `[...] int32`. Each step takes the next k bits,
    where `max(divisors) * 2**k <= 2**32`.

    Args:
      values: the numbers.
      divisors: Python ints in `[1, 2**31]`.
      which: `[...]` int32 index into `divisors` per value, or None.
    """
    largest = max(divisors)
    if not 1 <= min(divisors) <= largest <= 2**31:
        raise ValueError(f"modulo: divisors must be in [1, 2**31], got {divisors}")
    bits = 32 - (largest - 1).bit_length()  # k
    table = np.asarray(divisors, np.uint32)
    magic = np.uint32(0xFFFFFFFF) // table
    if which is None:
        divisor, factor = _U32(table[0]), _U32(magic[0])
    else:
        divisor, factor = jnp.asarray(table)[which], jnp.asarray(magic)[which]
    rest = jnp.zeros_like(values.lo)
    for top in range(64, 0, -bits):
        width = min(bits, top)
        pair = (values.hi, values.lo)
        low_word = _shr(pair, top - width)[1] if top > width else values.lo
        chunk = low_word & _U32((1 << width) - 1)
        shifted = (rest << width) | chunk if width < 32 else chunk
        if bits == 1:  # below 2 * divisor
            rest = jnp.where(shifted >= divisor, shifted - divisor, shifted)
        else:
            rest = _barrett(shifted, divisor, factor)
    return rest.astype(jnp.int32)


def buckets(ids: Ids, sizes: Sequence[int], which: jax.Array | None) -> jax.Array:
    """TensorFlow's bucket of each int64 id: `Fingerprint64(str(id)) %
    sizes[which]` (`hashing.to_hash_bucket_fast` of the ints), `int32`."""
    return modulo(fingerprint64(ids), sizes, which)
