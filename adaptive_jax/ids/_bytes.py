"""Strings, bytes and ints as the byte layout that `_farmhash` hashes (`Words`).

What TensorFlow hashes: a string's UTF-8 bytes, bytes themselves, an int's
decimal string (`tf.strings.as_string`, as Python's `str` writes it). Each form
becomes words without a Python object per value where it can:

- a numpy `S` array is its own bytes, one row per string (numpy drops trailing
  NULs, so a value's length is up to its last non-NUL byte);
- a numpy `U` array of ASCII text is its code points narrowed to bytes; the
  values that are not ASCII are encoded one by one;
- integers are written in decimal with uint64 arithmetic (`_decimal`);
- lists and object arrays are joined into one buffer, one string after the
  other, with Python's own encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adaptive_jax.ids import _decimal
from adaptive_jax.ids._farmhash import Words

_PAD = 8  # bytes after every string: a read of 8 bytes at its last byte fits


def from_byte_matrix(matrix: np.ndarray, lengths: np.ndarray) -> Words:
    """`[n, width] uint8` rows, each a string of `lengths` bytes from its start."""
    n, width = matrix.shape
    if width % 8:
        padded = np.zeros((n, width + 8 - width % 8), np.uint8)
        padded[:, :width] = matrix
        matrix = padded
    words = np.ascontiguousarray(matrix).view("<u8")
    return Words(words, 0, lengths.astype(np.int64))


def _one_row(joined: bytes, lengths: np.ndarray) -> Words:
    """Strings of `lengths` bytes one after the other in `joined`, as one row."""
    starts = np.zeros(lengths.size, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    row_bytes = -(-(len(joined) + _PAD) // 8) * 8
    buffer = np.zeros(row_bytes, np.uint8)
    buffer[: len(joined)] = np.frombuffer(joined, np.uint8)
    return Words(buffer.view("<u8")[None], starts, lengths, np.zeros_like(starts))


def from_encoded(values: Sequence[bytes]) -> Words:
    """Byte strings, in one buffer."""
    lengths = np.fromiter(map(len, values), np.int64, count=len(values))
    return _one_row(b"".join(values), lengths)


def from_bytes_array(values: np.ndarray) -> Words:
    """A 1-d `S` array: its own bytes (numpy drops trailing NULs, so a value
    ends at its last non-NUL byte)."""
    matrix = np.ascontiguousarray(values).view(np.uint8)
    matrix = matrix.reshape(values.size, values.dtype.itemsize)
    return from_byte_matrix(matrix, np.strings.str_len(values))


def from_unicode(values: np.ndarray) -> tuple[Words, np.ndarray | None]:
    """A 1-d `U` array's UTF-8 bytes: `(words, lanes)`, where `lanes` are the
    values the words hold (None: all, in order), the others being left for
    `from_encoded` (they are not ASCII)."""
    n, width = values.size, values.dtype.itemsize // 4
    codes = np.ascontiguousarray(values).view(np.uint32).reshape(n, width)
    lengths = np.strings.str_len(values)
    if int(codes.max(initial=0)) < 128:
        return from_byte_matrix(codes.astype(np.uint8), lengths), None
    ascii_lanes = np.flatnonzero((codes < 128).all(axis=1))
    matrix = codes[ascii_lanes].astype(np.uint8)
    return from_byte_matrix(matrix, lengths[ascii_lanes]), ascii_lanes


def from_integers(values: np.ndarray) -> Words:
    """A 1-d integer array's decimal strings, as Python's `str` writes them."""
    return _decimal.words(values)


def encoded(value: object) -> bytes:
    """One value's bytes as TensorFlow hashes it: UTF-8, bytes, or an int's
    decimal string.

    Raises:
      TypeError: anything else (floats, bools, None, ...), naming its type.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(value).encode("ascii")
    raise TypeError(
        f"values to hash must be strings, bytes or integers, got {type(value).__name__}"
    )


def from_objects(values: Sequence[object]) -> Words:
    """Python strings, bytes or ints, in one buffer. Text that is all ASCII is
    joined and encoded once; anything else value by value."""
    try:
        joined = "".join(values)  # TypeError unless every value is a str
    except TypeError:
        return from_encoded([encoded(v) for v in values])
    if not joined.isascii():
        return from_encoded([v.encode("utf-8") for v in values])
    lengths = np.fromiter(map(len, values), np.int64, count=len(values))
    return _one_row(joined.encode("ascii"), lengths)
