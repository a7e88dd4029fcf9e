"""Criteo lines to a `Batch`, vectorised with numpy over the bytes of a chunk.

Python's `str.split` on each line, then numpy's conversions, runs at about
100K lines/s. Here the tabs and newlines of a whole chunk are found at once,
each field becomes a (start, length) pair, and the integers are read digit by
digit and the categorical values cut out as fixed-width byte strings, all as
array operations: a few times faster. A line that does not parse is left out
of the batch and reported with the reason; the other lines are kept. A NUL
byte (`\\x00`) in a line makes it one that does not parse: numpy's fixed-width
strings would drop it at a value's end (`ab\\x00` read as the id `ab`), and no
Criteo value holds one.
"""

from __future__ import annotations

import numpy as np

from adaptive_jax.data import _batch

TAB, NEWLINE, MINUS, ZERO = 9, 10, ord("-"), ord("0")
MAX_INTEGER_CHARS = 18  # so that int64 holds any integer field exactly
MAX_FAST_CATEGORY_CHARS = 64  # longer values are cut out one by one
_PADDING = bytes(MAX_FAST_CATEGORY_CHARS)  # so that a field's window stays inside
_FIRST_INTEGER = 1
_FIRST_CATEGORY = 1 + len(_batch.INTEGER_COLUMNS)


def parse(
    chunk: bytes,
) -> tuple[_batch.Batch, list[tuple[int, str]], list[tuple[int, str]]]:
    """Parses whole lines of the Criteo format.

    Args:
      chunk: one or more lines, each ending in a newline ("\\n", not "\\r\\n").

    Returns:
      The batch of the lines that parse, in order; a list of
      `(line index in the chunk, reason)` for those that do not, in order
      (blank lines are neither); and the same for the lines kept whose
      categorical values are not Criteo's hexadecimal (kept as strings: they
      are ids all the same, but likely another format's).

    Example:

      >>> line = "\\t".join(["1", "-2"] + [""] * 12 + ["a1"] * 26) + "\\n"
      >>> batch, problems, notes = parse((line + "2" + line[1:] + "\\n").encode())
      >>> batch.size, batch.dense[0, :2].tolist(), batch.categorical["C26"].tolist()
      (1, [-2.0, 0.0], [['a1']])
      >>> problems
      [(1, "label '2' is not 0 or 1")]
      >>> parse(line.replace("a1", "zz", 1).encode() + b"\\n")[2]
      [(0, "C1 'zz' is not hexadecimal (kept)")]
    """
    size = len(chunk)
    chunk += _PADDING
    buf = np.frombuffer(chunk, np.uint8)
    lines, field_starts, lengths, problems = _split(buf)
    label = buf[field_starts[:, 0]]
    label_ok = (lengths[:, 0] == 1) & (label >= ZERO) & (label <= ZERO + 1)
    integers = slice(_FIRST_INTEGER, _FIRST_CATEGORY)
    dense, integer_ok = _integers(buf, field_starts[:, integers], lengths[:, integers])
    nul = _nul_fields(buf[:size], field_starts, lengths)
    good = label_ok & integer_ok.all(axis=1)
    good[list(nul)] = False
    for row in np.flatnonzero(~good):
        if row in nul:
            field = nul[row]
            what, reason = _field_name(field), "holds a NUL byte"
        elif label_ok[row]:
            column = int(np.argmin(integer_ok[row]))
            field, what = _FIRST_INTEGER + column, _batch.INTEGER_COLUMNS[column]
            reason = "is not an integer"
        else:
            field, what, reason = 0, "label", "is not 0 or 1"
        text = _text(chunk, field_starts[row, field], lengths[row, field])
        problems.append((int(lines[row]), f"{what} {text!r} {reason}"))
    rows = slice(None) if good.all() else good
    categories = slice(_FIRST_CATEGORY, None)
    strings = _strings(chunk, field_starts[rows, categories], lengths[rows, categories])
    notes = _not_hexadecimal(strings, lines[rows])
    batch = _batch.Batch(
        labels=(label[rows] - ZERO).astype(np.float32),
        dense=dense[rows],
        dense_missing=lengths[rows, integers] == 0,
        categorical={
            name: strings[:, i : i + 1]
            for i, name in enumerate(_batch.CATEGORICAL_COLUMNS)
        },
    )
    return batch, sorted(problems), notes


def _field_name(field: int) -> str:
    """The name of field `field` of a line: the label, I1..I13, C1..C26."""
    if field == 0:
        return "label"
    if field < _FIRST_CATEGORY:
        return _batch.INTEGER_COLUMNS[field - _FIRST_INTEGER]
    return _batch.CATEGORICAL_COLUMNS[field - _FIRST_CATEGORY]


def _nul_fields(
    buf: np.ndarray, field_starts: np.ndarray, lengths: np.ndarray
) -> dict[int, int]:
    """The rows (of the lines that have their fields) holding a NUL byte, each
    with its first such field."""
    found: dict[int, int] = {}
    if not len(field_starts):
        return found
    ends = field_starts[:, -1] + lengths[:, -1]
    for position in np.flatnonzero(buf == 0).tolist():
        row = int(np.searchsorted(field_starts[:, 0], position, side="right")) - 1
        if row >= 0 and position < ends[row] and row not in found:
            starts = field_starts[row]
            found[row] = int(np.searchsorted(starts, position, side="right")) - 1
    return found


def _not_hexadecimal(strings: np.ndarray, lines: np.ndarray) -> list[tuple[int, str]]:
    """A note for each kept line with a categorical value that is not
    hexadecimal digits (either case; "" is missing, not a value), naming its
    first such column."""
    if strings.size == 0:
        return []
    width = strings.dtype.itemsize // 4
    chars = np.ascontiguousarray(strings).view(np.uint32)
    chars = chars.reshape(*strings.shape, width)
    digit = (chars >= ZERO) & (chars <= ZERO + 9)
    lower = chars | 32
    letter = (lower >= ord("a")) & (lower <= ord("f"))
    odd = ~(digit | letter | (chars == 0)).all(axis=2)
    notes = []
    for row in np.flatnonzero(odd.any(axis=1)):
        column = int(np.argmax(odd[row]))
        name, value = _batch.CATEGORICAL_COLUMNS[column], str(strings[row, column])
        reason = f"{name} {value[:40]!r} is not hexadecimal (kept)"
        notes.append((int(lines[row]), reason))
    return notes


def _split(
    buf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Finds the fields of the lines that have the right number of them.

    Returns:
      Those lines' indices `[m]`, their fields' starts and lengths in bytes
      `[m, NUM_FIELDS]`, and a problem for each other line that is not blank.
    """
    ends = np.flatnonzero(buf == NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    tabs = np.flatnonzero(buf == TAB)
    first_tab = np.searchsorted(tabs, starts)
    fields = np.searchsorted(tabs, ends) - first_tab + 1
    lines = np.flatnonzero(fields == _batch.NUM_FIELDS)
    tab = tabs[first_tab[lines, None] + np.arange(_batch.NUM_FIELDS - 1)]
    field_starts = np.concatenate((starts[lines, None], tab + 1), axis=1)
    lengths = np.concatenate((tab, ends[lines, None]), axis=1) - field_starts
    wrong = np.flatnonzero((fields != _batch.NUM_FIELDS) & (starts != ends))
    problems = [
        (int(line), f"expected {_batch.NUM_FIELDS} tab-separated fields, got {n}")
        for line, n in zip(wrong, fields[wrong], strict=True)
    ]
    return lines, field_starts, lengths, problems


def _integers(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reads decimal integers (an optional "-", then digits) from their fields,
    a digit position at a time (Horner's rule), exactly, in int64.

    Returns:
      The values as float32 (0 where a field is empty or does not parse), and
      whether each field is empty or an integer.
    """
    ok = lengths <= MAX_INTEGER_CHARS
    lengths = np.where(ok, lengths, 0)  # a long field is not read, only refused
    negative = (buf[starts] == MINUS) & (lengths > 0)
    width = int(lengths.max(initial=0))
    chars = buf[starts[..., None] + np.arange(width)]
    values = np.zeros(lengths.shape, np.int64)
    for position in range(width):
        inside = position < lengths
        digit = chars[..., position] - np.uint8(ZERO)  # > 9 for any other byte
        is_digit = digit <= 9
        ok &= ~inside | is_digit | (negative if position == 0 else False)
        values = np.where(inside & is_digit, values * 10 + digit, values)
    ok &= ~(negative & (lengths == 1))
    values = np.where(negative, -values, values)
    return np.where(ok, values, 0).astype(np.float32), ok


def _strings(chunk: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cuts the fields out of the chunk, as a str array of the same shape.

    ASCII fields of up to MAX_FAST_CATEGORY_CHARS bytes are gathered into a
    fixed-width matrix of code points, which is viewed as str; otherwise each
    field is decoded as UTF-8 on its own (bytes that are not UTF-8 become
    U+FFFD).
    """
    width = int(lengths.max(initial=0))
    if width == 0:
        return np.zeros(lengths.shape, "U1")
    if width <= MAX_FAST_CATEGORY_CHARS:
        buf = np.frombuffer(chunk, np.uint8)
        position = np.arange(width)
        chars = buf[starts[..., None] + position]
        chars[position >= lengths[..., None]] = 0
        if chars.max() < 128:  # ASCII: each byte is its code point
            return chars.astype(np.uint32).view(f"U{width}")[..., 0]
    texts = [
        _text(chunk, start, length, limit=None)
        for start, length in zip(starts.ravel(), lengths.ravel(), strict=True)
    ]
    return np.array(texts, dtype=str).reshape(lengths.shape)


def _text(chunk: bytes, start: int, length: int, limit: int | None = 40) -> str:
    """The field as text; with `limit`, cut to that many bytes for a message."""
    end = start + (length if limit is None else min(length, limit))
    return chunk[start:end].decode("utf-8", "replace")
