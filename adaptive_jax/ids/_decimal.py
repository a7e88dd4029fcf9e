"""Integers' decimal strings, as Python's `str` writes them, in uint64 words.

TensorFlow buckets an int id by the Fingerprint64 of its decimal string
(`tf.strings.as_string`). Writing millions of them through Python objects is
most of the cost of hashing them, so here each id's digits are computed with
array arithmetic: the magnitude is cut into three parts below 10**8, and each
part becomes eight ASCII digits in one 64-bit word by halving it into lanes
(4 + 4 digits, then 2 + 2, then 1 + 1) with multiply-and-shift divisions that
are exact in the ranges they see (checked over every value by the tests). The
string of an id is the last `length` bytes of its three words, sign included.
"""

from __future__ import annotations

import numpy as np

from adaptive_jax.ids._farmhash import Words

_U64 = np.uint64
_E8 = _U64(10**8)
_END = 24  # each id's string ends at this byte of its row of words
_ASCII_ZEROS = _U64(0x3030303030303030)
_SPLIT_4 = _U64((1 - (10_000 << 32)) % 2**64)
_SPLIT_2 = _U64((1 - (100 << 16)) % 2**64)
_SPLIT_1 = _U64((1 - (10 << 8)) % 2**64)
_ZERO_TO_MINUS = _U64(ord("0") ^ ord("-"))


def eight_digits(x: np.ndarray) -> np.ndarray:
    """`x < 10**8` (uint64) as its eight decimal digits, one per byte (values
    0-9, most significant first in memory, leading zeros included)."""
    # Each halving puts the quotient in the low half of a lane and the
    # remainder in the high half: q + (v - d*q) << s == (v << s) + q*(1 - d << s),
    # exact lane by lane (no lane borrows), so modulo 2**64 too.
    high = x // _U64(10_000)
    lanes = (x << _U64(32)) + high * _SPLIT_4  # 2 lanes of 4 digits
    # lane // 100 == (lane * 10486) >> 20 below 10**4; lanes cannot carry.
    hundreds = ((lanes * _U64(10486)) >> _U64(20)) & _U64(0x0000007F0000007F)
    lanes = (lanes << _U64(16)) + hundreds * _SPLIT_2  # 4 lanes of 2 digits
    # lane // 10 == (lane * 103) >> 10 below 100.
    tens = ((lanes * _U64(103)) >> _U64(10)) & _U64(0x000F000F000F000F)
    return (lanes << _U64(8)) + tens * _SPLIT_1  # 8 lanes of 1 digit


def _leading_zero_bytes(word: np.ndarray) -> np.ndarray:
    """How many of the word's first bytes in memory (its low bytes) are 0:
    the trailing zero bits of the word, over 8 (8 for a zero word)."""
    lowest_bit = word & (~word + _U64(1))
    return np.bitwise_count(lowest_bit - _U64(1)).astype(np.int64) >> 3


def magnitudes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """`(|values| as uint64, values < 0 or None if unsigned)`, exact for
    int64's minimum (whose magnitude is 2**63)."""
    if values.dtype.kind == "u":
        return values.astype(_U64), None
    bits = values.astype(np.int64).view(_U64)
    negative = values < 0
    return np.where(negative, ~bits + _U64(1), bits), negative


def words(values: np.ndarray) -> Words:
    """A 1-d integer array's decimal strings as `Words`: row `i` holds the
    string of `values[i]` right-aligned at byte 24 of its four words."""
    magnitude, negative = magnitudes(values)
    top = magnitude // _E8
    high = top // _E8
    columns = np.zeros((4, values.size), _U64)  # column-major: each word contiguous
    columns[0], columns[1], columns[2] = high, top - high * _E8, magnitude - top * _E8
    digits = columns[:3]
    used = 0 if high.any() else 1 if top.any() else 2  # parts all 0 stay 0
    digits[used:] = eight_digits(digits[used:])
    # The first word with a digit other than 0, and that digit's byte in it.
    first = np.where(high > 0, 0, np.where(top > 0, 1, 2))
    skipped = 8 * first + _leading_zero_bytes(
        np.where(high > 0, digits[0], np.where(top > 0, digits[1], digits[2]))
    )
    lengths = np.maximum(_END - skipped, 1)  # 0 is written "0"
    digits |= _ASCII_ZEROS
    if negative is not None:
        lengths += negative
        _write_minus(columns, np.where(negative, _END - lengths, _END))
    # A class's reads reach at most 16 bytes before or 8 after a string's
    # start or end; the strings end at byte 24 of 32: every read is inside.
    return Words(columns.T, _END - lengths, lengths, reads_anywhere=True)


def _write_minus(columns: np.ndarray, at: np.ndarray) -> None:
    """Turns the "0" at byte `at` of each row into "-" (`at` = 24: none).
    Word k takes it shifted by `8 * at - 64 * k` bits: as uint64, a negative
    shift wraps to a huge one, which numpy shifts out to 0 like any shift of
    64 or more."""
    bits = (at << 3).astype(_U64)
    for k in range(3):
        columns[k] ^= _ZERO_TO_MINUS << (bits - _U64(64 * k))
