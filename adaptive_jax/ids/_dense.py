"""Dense features to `ColumnIds` in a few whole-array passes: the common input.

`feature_column.prepare` and `serving.prepare` send here the features that
are dense numpy arrays of one id per example (`[batch]` or `[batch, 1]`, -1
or "" missing) without routing masks: the members of a stacked column (entry
`example * F + member`, as `column.stacking` lays them out), or the features
of several single-feature columns of one kind at once (each column's entries
a row of their own). What `_host_ids` and `column.stacking` do for one
feature at a time, here each step is one numpy call over all the ids: the
strings' bytes into one buffer, their fingerprints (`_farmhash`), the keys
and buckets with each member's salt, bucket count and offset broadcast.

The same keys and buckets as the general path, bit for bit (the tests
compare them). Int ids may leave their buckets to the step (`buckets=None`:
`_device_fingerprint`), so that their host work is a copy.

Memory: at these sizes (hundreds of KiB an array) a fresh array costs more
in page faults than in arithmetic, because glibc hands freed blocks of that
size back to the system. So the work arrays are kept per thread and reused,
and the outputs of a call are views of one allocation, which raises glibc's
threshold to its size so that the next batch reuses the memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adaptive_jax.ids import _farmhash, _fingerprint, _int64
from adaptive_jax.ids import sparse as sparse_lib
from adaptive_jax.ids._host_ids import ColumnIds

_STRING_KEY_MODULUS = np.uint64(2**63 - 1)  # DeepRec's key of a string
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


def _buffer(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """This thread's work array `name`, reused while its shape and dtype stay."""
    arrays = _scratch.__dict__.setdefault("arrays", {})
    array = arrays.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = arrays[name] = np.empty(shape, dtype)
    return array


def column_ids(
    features: Sequence[np.ndarray],
    *,
    stacked: bool,
    strings: bool,
    tables: Tables,
    buckets: bool,
    size: int | None,
    keys: Sequence[str],
) -> list[ColumnIds]:
    """The `ColumnIds` of same-kind features that `accepts`, of one batch.

    Args:
      features: `[batch]` or `[batch, 1]` arrays, all of one kind.
      stacked: one stacked column of these members (one `ColumnIds`), or one
        column each.
      strings: the features are strings (else ints).
      tables: salts, bucket counts and offsets, by feature.
      buckets: compute the buckets here; False leaves them to the step
        (`ColumnIds.buckets` None: int ids only).
      size: padded entries of each `ColumnIds`; None for a power of two.
      keys: each `ColumnIds`' column key, for errors.

    Raises:
      ValueError: `size` below a column's number of ids, naming it.
    """
    batch, count = features[0].shape[0], len(features)
    shape, axis = ((batch, count), 1) if stacked else ((count, batch), 0)
    parts = [f.reshape((batch, 1) if stacked else (1, batch)) for f in features]
    table_shape = (count,) if stacked else (count, 1)  # broadcast over shape

    def table(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values.reshape(table_shape)

    if strings:
        prints, present = _fingerprints(features, stacked)
        values = _string_keys(prints, _buffer("keys", shape, np.uint64))
    else:
        values = _buffer("values", shape, np.int64)
        np.concatenate(parts, axis=axis, out=values, casting="unsafe")
        present = np.not_equal(values, -1, out=_buffer("present", shape, np.bool_))
        prints = _fingerprint.fingerprint64(values) if buckets else None
        values = values.view(np.uint64)
    bucket_values = None
    if buckets:
        bucket_values = _buffer("buckets", shape, np.uint64)
        if tables.sizes is None:
            bucket_values.fill(0)
        else:
            np.remainder(prints, table(tables.sizes), out=bucket_values)
        if tables.starts is not None:
            bucket_values += table(tables.starts).astype(np.uint64)
    if tables.salts is not None:
        np.bitwise_xor(values, table(tables.salts).view(np.uint64), out=values)
    segments = 1 if stacked else count
    return _outputs(
        values.reshape(segments, -1),
        None if bucket_values is None else bucket_values.reshape(segments, -1),
        present.reshape(segments, -1),
        strings=strings,
        size=size,
        keys=keys,
    )


def _string_keys(prints: np.ndarray, out: np.ndarray) -> np.ndarray:
    """DeepRec's key of a string, `Fingerprint64 % (2**63 - 1)`, into `out`:
    as 2**63 is 1 modulo 2**63 - 1, `(p & (2**63 - 1)) + (p >> 63)`, which is
    the key unless it reaches 2**63 - 1 (then one subtraction)."""
    np.right_shift(prints, np.uint64(63), out=out)
    out += prints & _STRING_KEY_MODULUS
    if int(out.max(initial=0)) >= _STRING_KEY_MODULUS:
        np.subtract(out, _STRING_KEY_MODULUS, out=out, where=out >= _STRING_KEY_MODULUS)
    return out


def _fingerprints(
    features: Sequence[np.ndarray], stacked: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`(Fingerprint64 uint64, present bool)` of string features, `[batch,
    F]` if `stacked`, else `[F, batch]`: their bytes in one buffer, feature
    by feature (numpy copies strings into rows far faster than into
    columns), hashed `_fingerprint.CHUNK` at a time; a non-ASCII text
    through the general path."""
    kind, (count, batch) = features[0].dtype.kind, (len(features), features[0].shape[0])
    unit = 4 if kind == "U" else 1
    chars = max(f.dtype.itemsize for f in features) // unit
    text = _buffer("text", (count, batch), np.dtype(f"{kind}{max(chars, 1)}"))
    np.concatenate([f.reshape(1, batch) for f in features], out=text)
    lengths = np.strings.str_len(text, out=_buffer("lengths", text.shape, np.int64))
    n, width = text.size, text.dtype.itemsize // unit
    codes = text.reshape(-1).view(np.uint32 if unit == 4 else np.uint8)
    codes = codes.reshape(n, width)
    if unit == 4 and int(codes.max(initial=0)) >= 128:
        return _laid_out(_fingerprint.fingerprint64(text), lengths, stacked)
    if unit == 1 and width % 8 == 0:
        words = codes  # the bytes themselves
    else:
        words = _buffer("words", (n, -(-width // 8) * 8), np.uint8)
        words[:, width:] = 0
        np.copyto(words[:, :width], codes, casting="unsafe")
    words = words.view("<u8")
    flat_lengths = lengths.reshape(-1)
    prints = _buffer("prints", text.shape, np.uint64)
    flat = prints.reshape(-1)
    for begin in range(0, n, _fingerprint.CHUNK):
        end = begin + _fingerprint.CHUNK
        chunk = _farmhash.Words(words[begin:end], 0, flat_lengths[begin:end])
        flat[begin:end] = _farmhash.fingerprint64(chunk)
    return _laid_out(prints, lengths, stacked)


def _laid_out(
    prints: np.ndarray, lengths: np.ndarray, stacked: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`[F, batch]` fingerprints and lengths as `(prints, present)`, turned
    to `[batch, F]` if `stacked`."""
    if stacked:
        turned = _buffer("prints_t", prints.shape[::-1], np.uint64)
        np.copyto(turned, prints.T)
        prints, lengths = turned, lengths.T
    present = np.greater(lengths, 0, out=_buffer("present", lengths.shape, np.bool_))
    return prints, present


def _outputs(
    values: np.ndarray,
    buckets: np.ndarray | None,
    present: np.ndarray,
    *,
    strings: bool,
    size: int | None,
    keys: Sequence[str],
) -> list[ColumnIds]:
    """Each segment (row) of the keys and buckets as a padded `ColumnIds`,
    its present entries first, in order."""
    segments, n = values.shape
    counts = np.count_nonzero(present, axis=1)
    if (counts == n).all():  # all present: every segment at once
        block = _Block(segments, _padded(n, size, keys[0]), buckets is not None)
        block.write(slice(None), values, buckets, None, n)
        return [block.column_ids(s, n, strings) for s in range(segments)]
    out = []
    for segment, count in enumerate(counts.tolist()):
        block = _Block(1, _padded(count, size, keys[segment]), buckets is not None)
        rows = np.flatnonzero(present[segment])
        kept = None if buckets is None else buckets[segment, rows][None]
        block.write(0, values[segment, rows][None], kept, rows, n)
        out.append(block.column_ids(0, n, strings))
    return out


def _padded(count: int, size: int | None, key: str) -> int:
    try:
        return sparse_lib.padded_size(count, size)
    except ValueError as error:
        raise ValueError(f"column '{key}': {error}") from error


class _Block:
    """The output arrays of `segments` columns of `size` entries each, as
    views of one allocation: indices, the keys' two words, buckets, valid."""

    def __init__(self, segments: int, size: int, buckets: bool) -> None:
        shape = (segments, size)
        layout = [("indices", np.int32, 2), ("lo", np.uint32, 1), ("hi", np.uint32, 1)]
        if buckets:
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

    def write(
        self,
        at: int | slice,
        values: np.ndarray,
        buckets: np.ndarray | None,
        rows: np.ndarray | None,
        batch_rows: int,
    ) -> None:
        """Segments `at` from `[segments, count]` keys (uint64) and buckets,
        at `rows` of a batch of `batch_rows` (None: rows 0, 1, ...), then
        padding."""
        count = values.shape[1]
        words = values.view(np.uint32).reshape(*values.shape, 2)  # little-endian
        np.copyto(self.lo[at, :count], words[..., 0])
        np.copyto(self.hi[at, :count], words[..., 1])
        self.lo[at, count:] = 0
        self.hi[at, count:] = 0
        indices = self.indices[at]
        indices[..., 1] = 0
        indices[..., :count, 0] = np.arange(count) if rows is None else rows
        indices[..., count:, 0] = batch_rows  # padding: outside the batch
        if buckets is not None:
            np.copyto(self.buckets[at, :count], buckets, casting="unsafe")
            self.buckets[at, count:] = 0
        self.valid[at, :count] = True
        self.valid[at, count:] = False

    def column_ids(self, segment: int, rows: int, strings: bool) -> ColumnIds:
        """Segment `segment` as the `ColumnIds` of a batch of `rows` rows."""
        batch = sparse_lib.SparseIds(
            indices=self.indices[segment],
            values=_int64.Ids(self.hi[segment], self.lo[segment]),
            valid=self.valid[segment],
            dense_shape=np.array([rows, 1], np.int32),
            batch_size=rows,
            strings=strings,
        )
        buckets = None if self.buckets is None else self.buckets[segment]
        return ColumnIds(ids=batch, buckets=buckets, to_dynamic=None)


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
        )
        for i, ids in zip(members, prepared, strict=True):
            out[i] = ids
    return out, {batch for _, batch in groups}
