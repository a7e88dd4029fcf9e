"""Stacked columns: many features in one table, each with its own static segment.

A model of 26 categorical features would compile 26 lookups and 26 updates;
stacked into one column it compiles one (jax-tpu-embedding stacks tables in the
same way). Each member feature keeps what DeepRec gives a column of its own:

- its own **static segment**: member `f` owns buckets
  `[offset_f, offset_f + hash_bucket_size_f)` of the stacked static table, so
  its rare ids collide only with each other, in a table sized for that feature
  (a 3-value feature needs 3 buckets, a 10M-value one thousands);
- its own **keys**: the member's DeepRec key XOR a salt of the member's name
  (`Fingerprint64(key) >> 1`), so equal raw ids of two members are two keys of
  the shared dynamic table (a bijection per member; two members' keys meet
  only if two ids differ by exactly the salts' XOR, for hashed ids a chance of
  about 2**-63 per pair);
- its own **field** of the output: the stacked batch has `batch * F` rows,
  example-major (row `i * F + f` is member `f` of example `i`), so that the
  embeddings reshape to `[batch, F * dim]`, the members side by side in order.

The dynamic table, its capacity, the admission counts and the eviction are
shared by the members. Used by `feature_column.prepare` and `serving.prepare`,
so that training and serving agree.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _dense, _device_fingerprint, _fingerprint, _host_ids
from adaptive_jax.ids import sparse as sparse_lib


@dataclasses.dataclass(frozen=True)
class Member:
    """One feature of a stacked column.

    Attributes:
      key: the feature's name in the features dict.
      hash_bucket_size: buckets of its static segment; None without static
        table (a stacked plain dynamic column).
    """

    key: str
    hash_bucket_size: int | None = None


def proportional_sizes(
    counts: Mapping[str, int], total: int, *, minimum: int = 1
) -> dict[str, int]:
    """Static segment sizes that share `total` buckets by `counts` (each
    feature's distinct ids, or its rare ids: those that will live in the
    static table), each at least `minimum`; they add up to `total`, or to
    `minimum * len(counts)` if that is more (or if every count is 0).

    The shares are rounded by largest remainder, so the sizes are a pure
    function of the counts and the total.

    Example:
      >>> proportional_sizes({"site": 900, "device": 3, "hour": 0}, 100)
      {'site': 98, 'device': 1, 'hour': 1}

    Raises:
      ValueError: no counts, a negative count, or `total` or `minimum` < 1.
    """
    if not counts:
        raise ValueError("proportional_sizes: no counts given")
    if total < 1 or minimum < 1:
        raise ValueError(
            f"proportional_sizes: total and minimum must be >= 1, got {total} and "
            f"{minimum}"
        )
    keys = list(counts)
    weights = [int(counts[k]) for k in keys]
    if any(w < 0 for w in weights):
        bad = keys[next(i for i, w in enumerate(weights) if w < 0)]
        raise ValueError(f"proportional_sizes: count of '{bad}' is negative")
    sizes = [minimum] * len(keys)
    spare, whole = total - minimum * len(keys), sum(weights)
    if spare > 0 and whole > 0:
        # Exact shares in integers: a quotient and a remainder per feature.
        shares = [divmod(spare * w, whole) for w in weights]
        sizes = [n + q for n, (q, _) in zip(sizes, shares, strict=True)]
        left = total - sum(sizes)
        order = sorted(range(len(keys)), key=lambda i: -shares[i][1])  # stable
        for i in order[:left]:
            sizes[i] += 1
    return {k: int(n) for k, n in zip(keys, sizes, strict=True)}


def offsets(members: Sequence[Member]) -> np.ndarray:
    """`[F] int64`: the first bucket of each member's static segment."""
    sizes = [m.hash_bucket_size or 0 for m in members]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


@functools.lru_cache(maxsize=4096)
def salt(member_key: str) -> np.int64:
    """The member's key salt: 63 bits of `Fingerprint64(member_key)`, so that a
    string's key (< 2**63) stays non-negative."""
    printed = _fingerprint.fingerprint64(np.array([member_key]))[0]
    return np.int64(printed >> np.uint64(1))


def salted_keys(keys: np.ndarray, member_key: str) -> np.ndarray:
    """A member's keys in the stacked dynamic table (see the module docstring)."""
    return np.bitwise_xor(keys.astype(np.int64), salt(member_key))


def check_present(
    members: Sequence[Member], column_key: str, features: Mapping[str, Any]
) -> None:
    """Raises a ValueError naming the first member missing from `features`."""
    for member in members:
        if member.key not in features:
            raise ValueError(
                f"column '{column_key}': its member feature '{member.key}' is "
                f"missing from the features (they have {sorted(features)})"
            )


def column_ids(
    features: Mapping[str, Any],
    *,
    key: str,
    dtype: str,
    members: Sequence[Member],
    masks: Mapping[str, Any] | None = None,
    size: int | None = None,
    int_buckets: str = "host",
) -> tuple[_host_ids.ColumnIds, int]:
    """The `ColumnIds` of a stacked column from its members' features, on the host.

    Args:
      features: a dict from feature key to ids (any form the input layer takes);
        one entry per member, all of the same batch size.
      key: the stacked column's key, for errors.
      dtype: the members' dtype ("string", "int64" or "int32").
      members: the members, in field order.
      masks: routing masks by member key (one 0/1 per sparse id of that
        member), for every member or for none; None for none.
      size: the padded number of entries of the stacked batch; None for a power
        of two.
      int_buckets: "host" or "device": where int ids' buckets are computed
        (`_host_ids.keys_and_buckets`).

    Returns:
      `(ColumnIds of batch_size batch * F, batch)`.

    Raises:
      ValueError: a missing member feature, members of different batch sizes,
        masks for some members only, or a member's bad ids or mask; each names
        the member.
    """
    check_present(members, key, features)
    masks = dict(masks or {})
    masked = [m.key for m in members if m.key in masks]
    if masked and len(masked) != len(members):
        missing = [m.key for m in members if m.key not in masks]
        raise ValueError(
            f"column '{key}': adaptive_mask_tensors has masks for members {masked} "
            f"but not for {missing}: give one for every member, or none"
        )
    if not masked:
        dense = _dense_column_ids(
            features,
            key=key,
            dtype=dtype,
            members=members,
            size=size,
            int_buckets=int_buckets,
        )
        if dense is not None:
            return dense
    num_fields = len(members)
    parts, batch_size = [], None
    for field, (member, start) in enumerate(
        zip(members, offsets(members), strict=True)
    ):
        batch = _host_ids.as_sparse(features[member.key], member.key, None)
        if batch_size is None:
            batch_size = batch.batch_size
        elif batch.batch_size != batch_size:
            raise ValueError(
                f"column '{key}': member '{member.key}' has {batch.batch_size} "
                f"examples, member '{members[0].key}' {batch_size}"
            )
        keys, buckets = _host_ids.keys_and_buckets(
            batch,
            key=member.key,
            dtype=dtype,
            hash_bucket_size=member.hash_bucket_size,
            int_buckets=int_buckets,
        )
        valid = np.asarray(batch.valid)
        indices = np.asarray(batch.indices)[valid]
        weights = None if batch.weights is None else np.asarray(batch.weights)[valid]
        mask = None
        if masked:
            mask = _host_ids.routing_mask(batch, member.key, masks[member.key])[valid]
        parts.append(
            (
                indices[:, 0].astype(np.int64) * num_fields + field,
                indices[:, 1],
                salted_keys(keys[valid], member.key),
                None if buckets is None else buckets[valid].astype(np.int64) + start,
                weights,
                mask,
                int(np.asarray(batch.dense_shape)[1]),
            )
        )
    merged = _merged(parts, batch_size, num_fields, dtype, size, key)
    return merged.replace(hash_bucket_size=_buckets_of(members)), batch_size


def _merged(
    parts: list[tuple],
    batch_size: int,
    num_fields: int,
    dtype: str,
    size: int | None,
    key: str,
) -> _host_ids.ColumnIds:
    """The members' entries as one padded batch, example-major, then by member
    and position."""
    rows, positions, keys, buckets, weights, masks, widths = (
        list(x) for x in zip(*parts, strict=True)
    )
    rows, positions = np.concatenate(rows), np.concatenate(positions)
    order = np.lexsort((positions, rows))
    num_ids = order.size
    try:
        size = sparse_lib.padded_size(num_ids, size)
    except ValueError as error:
        raise ValueError(f"column '{key}': {error}") from error
    stacked_rows = batch_size * num_fields
    indices = np.zeros((size, 2), np.int32)
    indices[:, 0] = stacked_rows
    indices[:num_ids, 0], indices[:num_ids, 1] = rows[order], positions[order]
    padded_keys = np.zeros(size, np.int64)
    padded_keys[:num_ids] = np.concatenate(keys)[order]
    padded_buckets = None
    if buckets[0] is not None:
        padded_buckets = np.zeros(size, np.int32)
        padded_buckets[:num_ids] = np.concatenate(buckets)[order]
    padded_weights = None
    if any(w is not None for w in weights):
        every = [
            np.ones(len(k), np.float32) if w is None else w
            for w, k in zip(weights, keys, strict=True)
        ]
        padded_weights = np.zeros(size, np.float32)
        padded_weights[:num_ids] = np.concatenate(every)[order]
    mask = None
    if masks[0] is not None:
        mask = np.zeros(size, bool)
        mask[:num_ids] = np.concatenate(masks)[order]
    batch = sparse_lib.SparseIds(
        indices=indices,
        values=ids_lib.split(padded_keys),
        valid=np.arange(size) < num_ids,
        dense_shape=np.asarray([stacked_rows, max(widths, default=0)], np.int32),
        batch_size=stacked_rows,
        strings=dtype == "string",
        weights=padded_weights,
    )
    return _host_ids.ColumnIds(ids=batch, buckets=padded_buckets, to_dynamic=mask)


def _dense_column_ids(
    features: Mapping[str, Any],
    *,
    key: str,
    dtype: str,
    members: Sequence[Member],
    size: int | None,
    int_buckets: str,
) -> tuple[_host_ids.ColumnIds, int] | None:
    """`column_ids` without masks when every member's feature is a dense numpy
    array of the column's kind, all of one batch: the members side by side
    are one dense batch, whose entries come out example-major and by member
    already, hashed in one pass (one id per example: `ids._dense`). None
    otherwise (the general path then does each member on its own, and names
    any bad one)."""
    arrays = [features[m.key] for m in members]
    batch_size = arrays[0].shape[0] if isinstance(arrays[0], np.ndarray) else None
    kinds = {a.dtype.kind for a in arrays if isinstance(a, np.ndarray)}
    if (
        all(_dense.accepts(a, dtype) for a in arrays)
        and (len(kinds) == 1 or kinds <= {"i", "u"})
        and {a.shape[0] for a in arrays} == {batch_size}
    ):
        if dtype == "int32":
            for member, array in zip(members, arrays, strict=True):
                _dense.check_int32(array, member.key)
        salts, starts, bucket_sizes = _member_tables(tuple(members))
        sizes = [m.hash_bucket_size for m in members]
        tables = _dense.Tables(
            salts, None if not any(sizes) else bucket_sizes, starts.astype(np.int64)
        )
        strings = dtype == "string"
        (column_ids,) = _dense.column_ids(
            arrays,
            stacked=True,
            strings=strings,
            tables=tables,
            buckets=strings or int_buckets == "host",
            size=size,
            keys=[key],
            hash_bucket_sizes=[_buckets_of(members)],
        )
        return column_ids, batch_size
    if not all(isinstance(a, np.ndarray) and a.ndim in (1, 2) for a in arrays):
        return None
    kinds = {a.dtype.kind for a in arrays}
    if len(kinds) != 1 or not kinds <= (
        {"U", "S"} if dtype == "string" else {"i", "u"}
    ):
        return None
    batch_size = arrays[0].shape[0]
    sizes = [m.hash_bucket_size for m in members]
    if any(a.shape[0] != batch_size for a in arrays) or (None in sizes and any(sizes)):
        return None
    matrices = [a.reshape(batch_size, -1) for a in arrays]
    widths = np.array([m.shape[1] for m in matrices])
    batch = _host_ids.as_sparse(np.concatenate(matrices, axis=1), key, size)
    num_ids = int(np.count_nonzero(batch.valid))
    indices, entries = batch.indices, slice(0, num_ids)
    field = indices[entries, 1].copy()  # the joined batch's column: its member...
    if np.any(widths != 1):  # else the column is the member
        field = np.repeat(np.arange(len(members), dtype=np.int32), widths)[field]
    salts, starts, bucket_sizes = _member_tables(tuple(members))
    per_entry = None
    if sizes[0] is not None:
        per_entry = np.ones(batch.size, np.uint64)
        per_entry[entries] = bucket_sizes[field]
    keys, buckets = _host_ids.keys_and_buckets(
        batch, key=key, dtype=dtype, hash_bucket_size=per_entry, int_buckets=int_buckets
    )
    keys[entries] ^= salts[field]
    if buckets is not None:
        buckets[entries] += starts[field]
    indices[entries, 1] -= (np.cumsum(widths) - widths).astype(np.int32)[field]
    indices[entries, 0] = indices[entries, 0] * len(members) + field  # ...its row
    indices[num_ids:, 0] = batch_size * len(members)
    stacked = batch.replace(
        indices=indices,
        values=ids_lib.split(keys),
        dense_shape=np.asarray([batch_size * len(members), widths.max()], np.int32),
        batch_size=batch_size * len(members),
    )
    column_ids = _host_ids.ColumnIds(
        ids=stacked,
        buckets=buckets,
        to_dynamic=None,
        hash_bucket_size=_buckets_of(members),
    )
    return column_ids, batch_size


def _buckets_of(members: Sequence[Member]) -> int | None:
    """A stacked column's static buckets (None without static table)."""
    sizes = [m.hash_bucket_size for m in members]
    return None if None in sizes else sum(sizes)


@functools.lru_cache(maxsize=64)
def _member_tables(
    members: tuple[Member, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per member: its key salt (int64), its segment's first bucket (int32)
    and its bucket count (uint64, 1 without static table)."""
    salts = np.array([salt(m.key) for m in members], np.int64)
    sizes = np.array([m.hash_bucket_size or 1 for m in members], np.uint64)
    return salts, offsets(members).astype(np.int32), sizes


def step_buckets(
    inputs: _host_ids.ColumnIds,
    hash_bucket_size: int | None,
    members: Sequence[Member] | None,
) -> _host_ids.ColumnIds:
    """`inputs` with their static buckets: as prepared, or, for int ids
    prepared with `int_buckets="device"` (buckets None), computed here from
    their keys, inside the jitted step: TensorFlow's buckets, bit for bit
    those the host finds (`ids._device_fingerprint`). A stacked member's id
    is its key XOR its salt, its member the entry's row modulo the members,
    its bucket moved to its segment. Padding gets bucket 0, as on the host.

    Args:
      inputs: a column's prepared ids.
      hash_bucket_size: the column's static buckets (None: none).
      members: a stacked column's members, or None.
    """
    if inputs.buckets is not None:
        return inputs
    batch = inputs.ids
    buckets = jnp.zeros(batch.valid.shape, jnp.int32)
    if members is None and hash_bucket_size is not None:
        buckets = _device_fingerprint.buckets(batch.values, (hash_bucket_size,), None)
    elif members is not None and any(m.hash_bucket_size for m in members):
        salts, starts, sizes = _member_tables(tuple(members))
        which = batch.row_ids % len(members)
        salt = ids_lib.split(salts)
        raw = ids_lib.Ids(
            batch.values.hi ^ jnp.asarray(salt.hi)[which],
            batch.values.lo ^ jnp.asarray(salt.lo)[which],
        )
        sizes = tuple(int(n) for n in sizes)
        buckets = _device_fingerprint.buckets(raw, sizes, which)
        buckets = buckets + jnp.asarray(starts)[which]
    return inputs.replace(buckets=jnp.where(batch.valid, buckets, 0))
