"""Dense features to `ColumnIds` in few numpy calls: the common input, fast.

`feature_column.prepare` and `serving.prepare` send here the features that
are dense numpy arrays of one id per example (`[batch]` or `[batch, 1]`, -1
or "" missing) without routing masks: the members of a stacked column (entry
`example * F + member`, as `column.stacking` lays them out), or the features
of several single-feature columns of one kind at once (one column a
segment). What `_host_ids` and `column.stacking` do feature by feature, here
each step is one numpy call over many ids. The same keys and buckets as the
general path, bit for bit (`tests/test_dense.py` compares them).

Strings: their bytes, a feature a row (numpy copies strings across far
slower), as words, Fingerprint64 (`_farmhash`) `_CHUNK` at a
time, turned example-major for a stacked column (whose members, when they are
the consecutive columns of one array, as a reader's batch gives them, are
hashed in place, already example-major), then DeepRec's key and
TensorFlow's bucket (`x - x // d * d` by one divisor: numpy divides by one
number several times faster than it takes a remainder). Int ids are their
own keys: copied, salted, and bucketed here only with `int_buckets="host"`
(the step computes them otherwise: `_device_fingerprint`). Missing ids are
found on the way (an empty string hashed as any other: `_prints`); only
then are the present ones gathered, column by column.

Memory: at these sizes (hundreds of KiB an array) a fresh array costs more
in page faults than in arithmetic, because glibc hands freed blocks of that
size back to the system. So the work arrays are kept per thread and reused,
and the outputs of a call are views of one allocation (`_Block`), which
raises glibc's threshold to its size so that the next batch reuses the
memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adaptive_jax.ids import _checks, _farmhash, _fingerprint, _int64
from adaptive_jax.ids import sparse as sparse_lib
from adaptive_jax.ids._host_ids import ColumnIds

_STRING_KEY_MODULUS = np.uint64(2**63 - 1)  # DeepRec's key of a string
# Strings hashed together: 256 KiB temporaries of 8-byte strings, which the
# allocator keeps once `_Block` has raised its threshold; 0.8x the time of
# `_fingerprint.CHUNK` (8,192) on 106,496 such strings.
_CHUNK = 32_768
_scratch = threading.local()


@dataclasses.dataclass(frozen=True)
class Tables:
    """Per feature: what its ids' keys and buckets take.

    Attributes:
      salts: `[F] int64` key salts (a stacked column's members), or None.
      sizes: `[F] uint64` bucket counts (1 for a feature without static
        table), or None for buckets all 0 (no static table).
      starts: `[F] int64` first bucket of each feature's segment, or None.
    """

    salts: np.ndarray | None = None
    sizes: np.ndarray | None = None
    starts: np.ndarray | None = None


def accepts(value: object, dtype: str) -> bool:
    """Whether this path takes `value` as the feature of a `dtype` column: a
    non-empty numpy array of one id per example, of the column's kind."""
    if not isinstance(value, np.ndarray) or value.ndim not in (1, 2):
        return False
    if value.shape[0] == 0 or (value.ndim == 2 and value.shape[1] != 1):
        return False
    kinds = "US" if dtype == "string" else "iu"
    return value.dtype.kind in kinds and value.dtype != np.bool_


def check_int32(array: np.ndarray, key: str) -> None:
    """Raises as the general path (`_checks.int32_range`) if an id of the
    int32 column `key` is outside int32 (-1, missing, is inside)."""
    if array.size == 0 or np.can_cast(array.dtype, np.int32):
        return
    if array.min() < _checks.INT32.min or array.max() > _checks.INT32.max:
        flat = array.reshape(-1)
        _checks.int32_range(flat, np.ones(flat.shape, bool), key)


def _buffer(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A C-contiguous work array of `shape`: the start of this thread's
    buffer `name`, which grows when asked for more (or another dtype)."""
    arrays = _scratch.__dict__.setdefault("arrays", {})
    array, size = arrays.get(name), int(np.prod(shape))
    if array is None or array.size < size or array.dtype != dtype:
        array = arrays[name] = np.empty(size, dtype)
    return array[:size].reshape(shape)


def _counting(count: int) -> np.ndarray:
    """`np.arange(count)` (int64), kept per thread."""
    numbers = _scratch.__dict__.get("counting")
    if numbers is None or numbers.size < count:
        numbers = _scratch.counting = np.arange(count, dtype=np.int64)
    return numbers[:count]


def column_ids(
    features: Sequence[np.ndarray],
    *,
    stacked: bool,
    strings: bool,
    tables: Tables,
    buckets: bool,
    size: int | None,
    keys: Sequence[str],
    hash_bucket_sizes: Sequence[int | None],
) -> list[ColumnIds]:
    """The `ColumnIds` of same-kind features that `accepts`, of one batch.

    Args:
      features: `[batch]` or `[batch, 1]` arrays, all of one kind.
      stacked: one stacked column of these members (one `ColumnIds`), or one
        column each.
      strings: the features are strings (else ints).
      tables: salts, bucket counts and offsets, by feature.
      buckets: compute int ids' buckets here; False leaves them to the step
        (`ColumnIds.buckets` None). Strings' are always computed.
      size: padded entries of each `ColumnIds`; None for a power of two.
      keys: each `ColumnIds`' column key, for errors.
      hash_bucket_sizes: each `ColumnIds`' `hash_bucket_size`, its column's.

    Raises:
      ValueError: `size` below a column's number of ids, naming it.
    """
    count = len(features)
    segments = 1 if stacked else count
    if strings:
        values, bucket_values, present = _strings(features, stacked, tables)
    else:
        values, bucket_values, present = _ints(features, stacked, tables, buckets)
    values = values.reshape(segments, -1)
    if bucket_values is not None:
        bucket_values = bucket_values.reshape(segments, -1)
    rows = values.shape[1]
    if present is None:  # all present: every segment at once
        block = _Block(segments, _padded(rows, size, keys[0]), strings, bucket_values)
        block.put(values, bucket_values)
        block.finish(rows, None, rows)
        return [
            block.column_ids(s, rows, made_for)
            for s, made_for in enumerate(hash_bucket_sizes)
        ]
    present, out = present.reshape(segments, -1), []
    for s, (key, made_for) in enumerate(zip(keys, hash_bucket_sizes, strict=True)):
        kept = np.flatnonzero(present[s])
        block = _Block(1, _padded(kept.size, size, key), strings, bucket_values)
        block.put(
            values[s, kept][None],
            None if bucket_values is None else bucket_values[s, kept][None],
        )
        block.finish(kept.size, kept, rows)
        out.append(block.column_ids(0, rows, made_for))
    return out


def _padded(count: int, size: int | None, key: str) -> int:
    try:
        return sparse_lib.padded_size(count, size)
    except ValueError as error:
        raise ValueError(f"column '{key}': {error}") from error


def _shaped(values: np.ndarray | None, stacked: bool) -> np.ndarray | None:
    """A per-feature table against ids laid out `[rows, F]` (stacked) or
    `[F, rows]`."""
    if values is None:
        return None
    return values.reshape(-1) if stacked else values.reshape(-1, 1)


def _ints(
    features: Sequence[np.ndarray], stacked: bool, tables: Tables, buckets: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Int ids' `(keys uint64, buckets uint64, present bool)`, `[batch, F]`
    if `stacked` else `[F, batch]`; buckets None unless `buckets`, present
    None if no id is missing (-1)."""
    count, batch = len(features), features[0].shape[0]
    shape = (batch, count) if stacked else (count, batch)
    values = _buffer("values", shape, np.int64)
    parts = [f.reshape((batch, 1) if stacked else (1, batch)) for f in features]
    np.concatenate(parts, axis=1 if stacked else 0, out=values, casting="unsafe")
    present = np.not_equal(values, -1, out=_buffer("present", shape, np.bool_))
    for at, feature in enumerate(features):
        if feature.dtype.kind == "u":  # no uint is -1, the missing id
            (present[:, at] if stacked else present[at]).fill(True)
    bucket_values = None
    if buckets:
        bucket_values = _buffer("buckets", shape, np.uint64)
        _buckets(_fingerprint.fingerprint64(values), tables, stacked, bucket_values)
    keys = values.view(np.uint64)
    if tables.salts is not None:
        keys ^= _shaped(tables.salts, stacked).view(np.uint64)
    return keys, bucket_values, None if present.all() else present


def _strings(
    features: Sequence[np.ndarray], stacked: bool, tables: Tables
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """String ids' `(keys uint64, buckets uint64, present bool)`, `[batch,
    F]` if `stacked` else `[F, batch]`; present None if no id is missing
    ("")."""
    count, batch = len(features), features[0].shape[0]
    side_by_side = _side_by_side(features) if stacked and count > 1 else None
    if side_by_side is not None:  # already [batch, F]: entry i * F + f
        prints, lengths = _prints(side_by_side)
    else:
        if count == 1:
            text = features[0].reshape(1, batch)
        else:  # one feature a row: numpy copies strings across far slower
            kind = features[0].dtype.kind
            width = max(f.dtype.itemsize for f in features) // (4 if kind == "U" else 1)
            text = _buffer("text", (count, batch), np.dtype(f"{kind}{width}"))
            np.concatenate([f.reshape(1, batch) for f in features], out=text)
        prints, lengths = _prints(text)  # [F, batch]
        if stacked and count > 1:  # to [batch, F]: entry i * F + f
            across = _buffer("across", (batch, count), np.uint64)
            np.copyto(across, prints.T)
            prints, lengths = across, lengths.T
    keys = _string_keys(prints, _buffer("keys", prints.shape, np.uint64))
    buckets = _buckets(
        prints, tables, stacked, _buffer("buckets", prints.shape, np.uint64)
    )
    if tables.salts is not None:
        keys ^= _shaped(tables.salts, stacked).view(np.uint64)
    present = np.greater(lengths, 0, out=_buffer("present", lengths.shape, np.bool_))
    return keys, buckets, None if present.all() else present


def _side_by_side(features: Sequence[np.ndarray]) -> np.ndarray | None:
    """The features as one C-contiguous `[batch, F]` array, without a copy,
    when they are the consecutive columns of one (a reader's batch, as
    `data.CriteoReader` makes them); else None. Feature f's row r is then at
    the first's address plus `r * F + f` items, which the view reads."""
    first, count = features[0], len(features)
    item = first.dtype.itemsize
    start = first.__array_interface__["data"][0]
    for f, feature in enumerate(features):
        if feature.dtype != first.dtype or feature.shape[0] != first.shape[0]:
            return None
        if feature.strides[0] != count * item and feature.shape[0] > 1:
            return None
        if feature.__array_interface__["data"][0] != start + f * item:
            return None
    return np.lib.stride_tricks.as_strided(
        first, (first.shape[0], count), (count * item, item), writeable=False
    )


def _prints(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(Fingerprint64 uint64, length int64)` of a `U` or `S` array: its
    bytes as words, hashed `_CHUNK` at a time (a non-ASCII text through the
    general path). An empty string's print is not its own: it is a missing
    id, never read, hashed as if it were the longest string, so that it
    does not split the strings into more length classes."""
    lengths = np.strings.str_len(text, out=_buffer("lengths", text.shape, np.int64))
    unit = 4 if text.dtype.kind == "U" else 1
    n, width = text.size, text.dtype.itemsize // unit
    codes = np.ascontiguousarray(text).reshape(-1)
    codes = codes.view(np.uint32 if unit == 4 else np.uint8).reshape(n, width)
    if unit == 4 and int(codes.max(initial=0)) >= 128:
        return _fingerprint.fingerprint64(text), lengths
    if unit == 1 and width % 8 == 0:
        words = codes  # the bytes themselves
    else:
        words = _buffer("words", (n, -(-width // 8) * 8), np.uint8)
        words[:, width:] = 0
        np.copyto(words[:, :width], codes, casting="unsafe")
    words, flat_lengths = words.view("<u8"), lengths.reshape(-1)
    if not flat_lengths.all():
        longest = int(flat_lengths.max())
        hashed = _buffer("hashed_lengths", flat_lengths.shape, np.int64)
        np.copyto(hashed, flat_lengths)
        hashed[flat_lengths == 0] = longest
        flat_lengths = hashed
    prints = _buffer("prints", text.shape, np.uint64)
    flat = prints.reshape(-1)
    for begin in range(0, n, _CHUNK):
        end = begin + _CHUNK
        chunk = _farmhash.Words(words[begin:end], 0, flat_lengths[begin:end])
        flat[begin:end] = _farmhash.fingerprint64(chunk)
    return prints, lengths


def _string_keys(prints: np.ndarray, out: np.ndarray) -> np.ndarray:
    """DeepRec's key of a string, `Fingerprint64 % (2**63 - 1)`, into `out`:
    as 2**63 is 1 modulo 2**63 - 1, `(p & (2**63 - 1)) + (p >> 63)`, which is
    the key unless it reaches 2**63 - 1 (then one subtraction)."""
    np.right_shift(prints, np.uint64(63), out=out)
    out += prints & _STRING_KEY_MODULUS
    if int(out.max(initial=0)) >= _STRING_KEY_MODULUS:
        np.subtract(out, _STRING_KEY_MODULUS, out=out, where=out >= _STRING_KEY_MODULUS)
    return out


def _buckets(
    prints: np.ndarray, tables: Tables, stacked: bool, out: np.ndarray
) -> np.ndarray:
    """TensorFlow's buckets, `print % size`, moved to each feature's segment,
    into `out`. One divisor (the same for every feature), or one per row of
    `[F, batch]`: `x - x // d * d`; one per column of `[batch, F]`: a
    remainder."""
    sizes = tables.sizes
    if sizes is None:
        out.fill(0)
    elif stacked and not (sizes == sizes[0]).all():  # a divisor per column
        np.remainder(prints, sizes, out=out)
    else:
        one = bool((sizes == sizes[0]).all())
        rows, into = (a.reshape(1 if one else sizes.size, -1) for a in (prints, out))
        for row, divisor in enumerate(sizes[:1].tolist() if one else sizes.tolist()):
            divisor = np.uint64(divisor)
            np.floor_divide(rows[row], divisor, out=into[row])
            into[row] *= divisor
            np.subtract(rows[row], into[row], out=into[row])
    if tables.starts is not None:
        out += _shaped(tables.starts, stacked).astype(np.uint64)
    return out


class _Block:
    """The output arrays of `segments` columns of `size` entries each, as
    views of one allocation: indices, the keys' two words, buckets, valid."""

    def __init__(
        self, segments: int, size: int, strings: bool, buckets: np.ndarray | None
    ) -> None:
        """`buckets`: the buckets to come (None: none)."""
        self.strings, shape = strings, (segments, size)
        layout = [("indices", np.int32, 2), ("lo", np.uint32, 1), ("hi", np.uint32, 1)]
        if buckets is not None:
            layout.append(("buckets", np.int32, 1))
        layout.append(("valid", np.bool_, 1))
        sizes = [segments * size * np.dtype(t).itemsize * k for _, t, k in layout]
        memory = np.empty(sum(sizes), np.uint8)
        self.buckets = None
        start = 0
        for (name, dtype, k), nbytes in zip(layout, sizes, strict=True):
            view = memory[start : start + nbytes].view(dtype)
            setattr(self, name, view.reshape(shape + ((k,) if k > 1 else ())))
            start += nbytes

    def put(self, keys: np.ndarray, buckets: np.ndarray | None) -> None:
        """The first entries of every segment: `[segments, k]` keys (uint64,
        C-contiguous) and buckets."""
        at = slice(0, keys.shape[1])
        words = keys.view(np.uint32).reshape(*keys.shape, 2)  # little-endian
        np.copyto(self.lo[:, at], words[..., 0])
        np.copyto(self.hi[:, at], words[..., 1])
        if buckets is not None:
            np.copyto(self.buckets[:, at], buckets, casting="unsafe")

    def finish(self, count: int, rows: np.ndarray | None, batch_rows: int) -> None:
        """The first `count` entries of each segment are ids at `rows` of a
        batch of `batch_rows` (None: rows 0, 1, ...); the rest padding."""
        for words in (self.lo, self.hi, self.buckets):
            if words is not None:
                words[:, count:] = 0
        # (row, 0) pairs of int32 are the int64 `row` (little-endian).
        pairs = self.indices.view(np.int64)[..., 0]
        pairs[:, :count] = _counting(count) if rows is None else rows
        pairs[:, count:] = batch_rows  # padding: outside the batch
        self.valid[:, :count] = True
        self.valid[:, count:] = False

    def column_ids(self, segment: int, rows: int, made_for: int | None) -> ColumnIds:
        """Segment `segment` as the `ColumnIds` of a batch of `rows` rows,
        for `made_for` buckets."""
        batch = sparse_lib.SparseIds(
            indices=self.indices[segment],
            values=_int64.Ids(self.hi[segment], self.lo[segment]),
            valid=self.valid[segment],
            dense_shape=np.array([rows, 1], np.int32),
            batch_size=rows,
            strings=self.strings,
        )
        buckets = None if self.buckets is None else self.buckets[segment]
        return ColumnIds(batch, buckets, None, made_for)


def single_columns(
    features: Mapping[str, np.ndarray],
    columns: Sequence[tuple[str, str, int | None]],
    *,
    size: int | None,
    int_buckets: str,
) -> tuple[list[ColumnIds], set[int]]:
    """The `ColumnIds` of single-feature columns, each `(feature key, dtype,
    hash_bucket_size)`, whose features `accepts`: those of one kind and one
    batch size taken together. Returns them in the order of `columns`, and
    the batch sizes seen."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (key, _, _) in enumerate(columns):
        array = features[key]
        kind = "int" if array.dtype.kind in "iu" else array.dtype.kind
        groups.setdefault((kind, array.shape[0]), []).append(i)
    out: list[Any] = [None] * len(columns)
    for key, dtype, _ in columns:
        if dtype == "int32":
            check_int32(features[key], key)
    for (kind, _), members in groups.items():
        keys = [columns[i][0] for i in members]
        sizes = [columns[i][2] for i in members]
        tables = Tables(
            sizes=np.array([n or 1 for n in sizes], np.uint64) if any(sizes) else None
        )
        strings = kind != "int"
        prepared = column_ids(
            [features[k] for k in keys],
            stacked=False,
            strings=strings,
            tables=tables,
            buckets=strings or int_buckets == "host",
            size=size,
            keys=keys,
            hash_bucket_sizes=sizes,
        )
        for i, ids in zip(members, prepared, strict=True):
            out[i] = ids
    return out, {batch for _, batch in groups}
