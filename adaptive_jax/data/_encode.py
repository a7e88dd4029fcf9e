"""Criteo lines from arrays, vectorised: the writing side of `_parse`.

A group of k columns of one kind becomes a `[n, k, width]` array of bytes and
a mask of the same shape saying which bytes are the fields' (the others are
padding). The lines are the groups' bytes side by side, each field followed by
a tab (a newline after the last one of the line), cut out of the row-major
matrix with the masks. Python never sees a single field, and whole groups are
copied at once, never a column at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Fields = tuple[np.ndarray, np.ndarray]  # [n, k, width] uint8 bytes, bool kept
_POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)
_HEX_PAIRS = np.array(
    [ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], "<u2"
)  # byte -> its two hex digits, in memory order


def labels(values: np.ndarray) -> Fields:
    """`[n]` 0/1 labels as "0" or "1"."""
    chars = (np.asarray(values, np.uint8) + ord("0"))[:, None, None]
    return chars, np.ones(chars.shape, bool)


def integers(values: np.ndarray, missing: np.ndarray) -> Fields:
    """`[n, k]` int64 values in decimal, "-" for negatives; empty where missing.

    The digits come from the right, by division by 10 (a constant, so numpy
    divides fast), so the fields are right-aligned in their width.
    """
    magnitude = np.abs(values)
    negative = values < 0
    lengths = np.searchsorted(_POWERS_OF_TEN, magnitude, side="right") + 1 + negative
    lengths[missing] = 0
    width = int(lengths.max(initial=0))
    chars = np.empty((*values.shape, width), np.uint8)
    for position in range(width - 1, -1, -1):
        magnitude, digit = np.divmod(magnitude, 10)
        chars[..., position] = digit + ord("0")
    start = width - lengths
    position = np.arange(width)
    chars[negative[..., None] & (position == start[..., None])] = ord("-")
    return chars, position >= start[..., None]


def hex_ids(ids: np.ndarray, missing: np.ndarray) -> Fields:
    """`[n, k]` uint32 ids as 8 lowercase hex digits; empty where missing."""
    big_endian = ids.astype(">u4")[..., None].view(np.uint8)  # [n, k, 4]
    chars = _HEX_PAIRS[big_endian].view(np.uint8)  # [n, k, 8]
    return chars, np.broadcast_to(~missing[..., None], chars.shape)


def lines(groups: Sequence[Fields]) -> bytes:
    """The fields of each row, group after group, tab-separated, one line per
    row."""
    blocks, keeps = [], []
    for chars, kept in groups:
        rows, columns, width = chars.shape
        block = np.empty((rows, columns, width + 1), np.uint8)
        block[..., :width] = chars
        block[..., width] = ord("\t")
        keep = np.ones((rows, columns, width + 1), bool)
        keep[..., :width] = kept
        blocks.append(block.reshape(rows, -1))
        keeps.append(keep.reshape(rows, -1))
    blocks[-1][:, -1] = ord("\n")
    matrix, keep = np.concatenate(blocks, axis=1), np.concatenate(keeps, axis=1)
    return np.compress(keep.ravel(), matrix.ravel()).tobytes()
