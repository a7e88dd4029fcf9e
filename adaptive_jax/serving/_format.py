"""What a serving export holds, and a delta that patches one: numpy on the host.

An export holds, per column, what serving needs and nothing else: the static
table, and the live rows of the dynamic table (keys, values, and DeepRec's
per-row `freqs` and `versions`), sorted by key; no optimizer state, no free
rows. A delta since an export holds the rows that changed after it, the static
buckets that changed, and tombstones: the keys to take out.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np


@dataclasses.dataclass
class ColumnExport:
    """One column of an export.

    Attributes:
      key: the feature's key; dtype: "string", "int64" or "int32".
      kind: "adaptive" (static and dynamic tables), "dynamic" or "static".
      dimension, combiner, hash_bucket_size: the column's settings
        (hash_bucket_size None without static table).
      no_permission_value: what a plain dynamic column with an admission filter
        gives an id without a row (DeepRec's `default_value_no_permission`).
      step: the training step the export was taken at.
      static: `[hash_bucket_size, dimension]`, the static table, or None.
      default_values: `[n, dimension]`, the starting values of the new keys of a
        plain dynamic column without admission filter (key `k` starts from row
        `k % n`): what such a column gives an id without a row. Else None.
      keys: `[k] int64`, the dynamic table's keys, ascending.
      values: `[k, dimension]`, their rows (float32 or bfloat16).
      freqs: `[k] int32`, how often each key was looked up.
      versions: `[k] int32`, the step of each key's last lookup.
      members: a stacked column's `(feature key, hash_bucket_size)` per member,
        in field order (see `adaptive_jax.stacking`); None for one feature.
    """

    arrays: ClassVar[tuple[str, ...]] = (
        "static",
        "default_values",
        "keys",
        "values",
        "freqs",
        "versions",
    )

    key: str
    dtype: str
    kind: str
    dimension: int
    combiner: str
    hash_bucket_size: int | None
    no_permission_value: float
    step: int
    static: np.ndarray | None
    default_values: np.ndarray | None
    keys: np.ndarray
    values: np.ndarray
    freqs: np.ndarray
    versions: np.ndarray
    members: tuple[tuple[str, int | None], ...] | None = None

    def __post_init__(self):
        if self.members is not None:  # JSON gives lists
            self.members = tuple((str(k), n) for k, n in self.members)

    @property
    def fields(self) -> int:
        """The features the column embeds: its members, or 1."""
        return 1 if self.members is None else len(self.members)

    @property
    def nbytes(self) -> int:
        return _nbytes(self)


@dataclasses.dataclass
class Export:
    """A serving export: its columns by embedding-column name."""

    columns: dict[str, ColumnExport]

    @property
    def nbytes(self) -> int:
        return sum(column.nbytes for column in self.columns.values())


@dataclasses.dataclass
class ColumnDelta:
    """What changed in one column between two exports.

    Attributes:
      since: the step of the export it patches; step: the step it brings it to.
      static_buckets: `[m] int32`, the static buckets trained since.
      static_values: `[m, dimension]`, their values now.
      keys, values, freqs, versions: the rows that changed since or are new to
        the export, as in `ColumnExport`, ascending by key.
      removed: `[r] int64`, tombstones: keys of the old export that the new one
        lacks (evicted, zeroed, or out of the top-K).
    """

    arrays: ClassVar[tuple[str, ...]] = (
        "static_buckets",
        "static_values",
        "keys",
        "values",
        "freqs",
        "versions",
        "removed",
    )

    since: int
    step: int
    static_buckets: np.ndarray
    static_values: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    freqs: np.ndarray
    versions: np.ndarray
    removed: np.ndarray

    @property
    def nbytes(self) -> int:
        return _nbytes(self)


@dataclasses.dataclass
class Delta:
    """A delta export: its columns by embedding-column name."""

    columns: dict[str, ColumnDelta]

    @property
    def nbytes(self) -> int:
        return sum(column.nbytes for column in self.columns.values())


def _nbytes(column: ColumnExport | ColumnDelta) -> int:
    arrays = (getattr(column, name) for name in column.arrays)
    return sum(array.nbytes for array in arrays if array is not None)


def apply_delta(exported: Export, delta: Delta) -> Export:
    """The export that `delta` makes of `exported`: tombstoned keys leave,
    changed rows replace their old ones or join, changed buckets are copied.

    Raises:
      ValueError: the delta lacks a column of the export, or was taken since
        another step than the export's (it would leave stale keys behind).
    """
    columns = {}
    for name, old in exported.columns.items():
        change = delta.columns.get(name)
        if change is None:
            raise ValueError(f"column '{name}': the delta has no such column")
        if change.since != old.step:
            raise ValueError(
                f"column '{name}': the delta is since step {change.since}, the "
                f"export is of step {old.step}"
            )
        keep = ~np.isin(old.keys, np.concatenate([change.keys, change.removed]))
        keys = np.concatenate([old.keys[keep], change.keys])
        order = np.argsort(keys, kind="stable")

        def merged(field: str) -> np.ndarray:
            both = [getattr(old, field)[keep], getattr(change, field)]  # noqa: B023
            return np.concatenate(both)[order]  # noqa: B023

        static = old.static
        if static is not None and change.static_buckets.size:
            static = static.copy()
            static[change.static_buckets] = change.static_values
        columns[name] = dataclasses.replace(
            old,
            step=change.step,
            static=static,
            keys=keys[order],
            values=merged("values"),
            freqs=merged("freqs"),
            versions=merged("versions"),
        )
    return Export(columns)
