"""The feature columns: what each column is, with DeepRec's names.

Frozen dataclasses (hashable, so static under jit): `CategoricalColumn` (where
a column's ids go: a static table, a dynamic one, or both, routed by a mask or
an admission filter; or a stack of such columns) and `EmbeddingColumn` (its
dimension, combiner and initializer); their factories check every argument
and name the column in their errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from adaptive_jax import _numerics
from adaptive_jax import table as table_lib
from adaptive_jax.column import adaptive, combiners, stacking
from adaptive_jax.column.options import EmbeddingVariableOption
from adaptive_jax.ids import _device_hash

DTYPES = ("string", "int64", "int32")


DEFAULT_EV_OPTION = EmbeddingVariableOption()


def _dtype_name(dtype: Any, key: str) -> str:
    name = getattr(dtype, "name", dtype)
    name = {"str": "string", "object": "string"}.get(str(name), str(name))
    if name not in DTYPES:
        raise ValueError(
            f"column '{key}': dtype must be one of {DTYPES}, got {dtype!r}"
        )
    return name


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(
            f"a column's key must be a non-empty str (its feature's name), got {key!r}"
        )


def _check_buckets(hash_bucket_size: int, key: str) -> int:
    """The number of buckets as an int (a NumPy integer taken), checked."""
    hash_bucket_size = _numerics.python_int(hash_bucket_size)
    if isinstance(hash_bucket_size, bool) or not isinstance(hash_bucket_size, int):
        raise ValueError(
            f"column '{key}': hash_bucket_size must be an int, got {hash_bucket_size!r}"
        )
    if not 1 <= hash_bucket_size <= 2**31 - 1:
        raise ValueError(
            f"column '{key}': hash_bucket_size must be in [1, 2**31 - 1], got "
            f"{hash_bucket_size}"
        )
    return hash_bucket_size


def _check_partitions(partition_num: int | None, key: str) -> int | None:
    """The number of partitions as an int or None (a NumPy integer taken)."""
    partition_num = _numerics.python_int(partition_num)
    if partition_num is None:
        return None
    limit = _device_hash.VIRTUAL_BUCKETS
    if (
        isinstance(partition_num, bool)
        or not isinstance(partition_num, int)
        or not 1 <= partition_num <= limit
    ):
        raise ValueError(
            f"column '{key}': partition_num must be None or an int in [1, {limit}], "
            f"got {partition_num!r}"
        )
    return partition_num


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column: where its ids go. Build it with a factory below.

    Attributes:
      key: the feature's name in the features dict.
      dtype: "string", "int64" or "int32".
      hash_bucket_size: buckets of the static table, or None (no static table).
      ev_option: options of the dynamic table, or None (no dynamic table).
      adaptive: whether ids are routed by a mask (both tables).
      migration: how promoted rows start: "fitted" (the measured share of
        their bucket), "deeprec", "warm", "copy" (from their bucket), "none"
        (from the initializer).
      partition_num: partitions of the dynamic table (see `partitioned`), or
        None for one table.
      members: a stacked column's features (`stacking.Member`: key and static
        segment), in field order; None for a column of one feature, `key`.
    """

    key: str
    dtype: str
    hash_bucket_size: int | None = None
    ev_option: EmbeddingVariableOption | None = None
    adaptive: bool = False
    migration: str = "fitted"
    partition_num: int | None = None
    members: tuple[stacking.Member, ...] | None = None

    @property
    def fields(self) -> int:
        """The features this column embeds: its members, or 1."""
        return 1 if self.members is None else len(self.members)

    @property
    def feature_keys(self) -> tuple[str, ...]:
        """The keys of the features this column reads."""
        if self.members is None:
            return (self.key,)
        return tuple(m.key for m in self.members)


def categorical_column_with_adaptive_embedding(
    key: str,
    hash_bucket_size: int,
    dtype: Any = "string",
    partition_num: int | None = None,
    ev_option: EmbeddingVariableOption = DEFAULT_EV_OPTION,
    *,
    migration: str = "fitted",
) -> CategoricalColumn:
    """DeepRec's adaptive column: a static table of `hash_bucket_size` buckets
    for rare ids, a dynamic table (`ev_option.capacity` rows) for frequent ones.

    Which ids get a row, one of two ways:
    - a routing mask per id (`adaptive_mask_tensors[key]`, 1: dynamic, 0: the
      static bucket), given to `prepare` or `input_layer`; or
    - with no mask, an admission policy, `ev_option.filter_option`:
      `CounterFilter(n)` promotes an id once it has been seen `n` times
      (counted in a fixed-size count-min sketch), `CBFFilter` likewise with a
      counting Bloom filter; until then its bucket serves it.
    A column with neither is an error. An id entering the dynamic table starts
    from what its bucket learnt, as far as `migration` says: "fitted" (the
    default) the share of the bucket that promoted ids of its feature are
    measured to hold (0 until there is evidence: `column._share`); DeepRec's
    "deeprec" the whole value with fresh optimizer slots; "warm" the whole
    value kept by its slots; "copy" the value and the bucket's slots; "none"
    nothing (the initializer). When the table is full, a promoted id stays in
    its bucket (counted).

    `ev_option.evict_option` (`GlobalStepEvict(steps_to_live)`,
    `L2WeightEvict(threshold)`, `PressureEvict`, or a tuple) says which rows
    `evict` / `maybe_evict` give back; their ids fall back to their buckets.
    `ev_option.l1_mode` is FTRL's L1 on the rows ("row", DeepRec's default, or
    "coordinate"); `ev_option.init_option` is used only by plain dynamic
    columns and migrations "fitted" and "none".

    Args:
      key: the feature's key in the raw features.
      hash_bucket_size: static buckets, `Fingerprint64(str(id)) % size`.
      dtype: "string" or "int64" (or int32) ids.
      partition_num: split the dynamic table into this many partitions (over
        a device mesh with a `sharding.Layout`), or None.
      ev_option: the dynamic table's `EmbeddingVariableOption`.
      migration: what a promoted row takes from its bucket (above).

    Raises:
      ValueError: a bad hash_bucket_size, dtype or migration, naming the column.
    """
    _check_key(key)
    hash_bucket_size = _check_buckets(hash_bucket_size, key)
    partition_num = _check_partitions(partition_num, key)
    if migration not in adaptive.MIGRATIONS:
        raise ValueError(
            f"column '{key}': migration must be one of {adaptive.MIGRATIONS}, got "
            f"{migration!r}"
        )
    return CategoricalColumn(
        key,
        _dtype_name(dtype, key),
        hash_bucket_size,
        ev_option,
        True,
        migration,
        partition_num,
    )


def categorical_column_with_embedding(
    key: str,
    dtype: Any = "string",
    partition_num: int | None = None,
    ev_option: EmbeddingVariableOption = DEFAULT_EV_OPTION,
) -> CategoricalColumn:
    """A plain dynamic table (DeepRec's EmbeddingVariable column): a row per id,
    up to `ev_option.capacity`; a new id starts from DeepRec's default values."""
    _check_key(key)
    partition_num = _check_partitions(partition_num, key)
    return CategoricalColumn(
        key, _dtype_name(dtype, key), None, ev_option, partition_num=partition_num
    )


def categorical_column_with_hash_bucket(
    key: str, hash_bucket_size: int, dtype: Any = "string"
) -> CategoricalColumn:
    """A plain static table: id -> `Fingerprint64(str(id)) % hash_bucket_size`."""
    _check_key(key)
    hash_bucket_size = _check_buckets(hash_bucket_size, key)
    return CategoricalColumn(key, _dtype_name(dtype, key), hash_bucket_size)


def stacked_column(
    categorical_columns: Sequence[CategoricalColumn], key: str
) -> CategoricalColumn:
    """One column for many features of the same kind: one table to compile, each
    feature with its own static segment of its own `hash_bucket_size`, its own
    keys and its own field of the output (see `stacking`).

    The members are built as columns of their own (all adaptive, all plain
    dynamic or all plain static, of one dtype, migration and options except the
    capacity); the stacked column's dynamic table holds the sum of their
    capacities, and its embedding is `[batch, members * dimension]`, the
    members side by side in the order given. Its state, export and
    checkpoint are those of one column, named after `key`.

    Example:
      >>> c = [categorical_column_with_adaptive_embedding(k, n)
      ...      for k, n in (("site", 8), ("device", 2))]
      >>> fields = stacked_column(c, "fields")
      >>> fields.hash_bucket_size, fields.feature_keys
      (10, ('site', 'device'))

    Raises:
      ValueError: no members, a repeated feature key, members of other kinds,
        dtypes, migrations, partitions or options, or a capacity over the
        table's limit; each names the member.
    """
    members = list(categorical_columns)
    if not members:
        raise ValueError(f"stacked column '{key}': give at least one member column")
    first = members[0]
    for column in members:
        if not isinstance(column, CategoricalColumn) or column.members is not None:
            raise ValueError(
                f"stacked column '{key}': members must be categorical columns of "
                f"one feature, got {column!r}"
            )
        for field in ("dtype", "adaptive", "migration", "partition_num"):
            if getattr(column, field) != getattr(first, field):
                raise ValueError(
                    f"stacked column '{key}': member '{column.key}' has {field} "
                    f"{getattr(column, field)!r}, member '{first.key}' "
                    f"{getattr(first, field)!r}: stack columns of one kind"
                )
        if (column.hash_bucket_size is None) != (first.hash_bucket_size is None) or (
            (column.ev_option is None) != (first.ev_option is None)
        ):
            raise ValueError(
                f"stacked column '{key}': member '{column.key}' is not of the kind "
                f"of member '{first.key}' (static, dynamic or adaptive)"
            )
        if (
            column.ev_option is not None
            and dataclasses.replace(column.ev_option, capacity=first.ev_option.capacity)
            != first.ev_option
        ):
            raise ValueError(
                f"stacked column '{key}': member '{column.key}' has other "
                f"ev_option settings than member '{first.key}' (only the capacity "
                "may differ)"
            )
    keys = [c.key for c in members]
    if len(set(keys)) != len(keys):
        raise ValueError(f"stacked column '{key}': a feature is repeated in {keys}")
    buckets = None
    if first.hash_bucket_size is not None:
        buckets = sum(c.hash_bucket_size for c in members)
        _check_buckets(buckets, key)
    option = first.ev_option
    if option is not None:
        capacity = sum(c.ev_option.capacity for c in members)
        if capacity > table_lib.MAX_CAPACITY:
            raise ValueError(
                f"stacked column '{key}': the members' capacities add up to "
                f"{capacity}, over the dynamic table's {table_lib.MAX_CAPACITY}"
            )
        option = dataclasses.replace(option, capacity=capacity)
    return CategoricalColumn(
        key,
        first.dtype,
        buckets,
        option,
        first.adaptive,
        first.migration,
        first.partition_num,
        tuple(stacking.Member(c.key, c.hash_bucket_size) for c in members),
    )


@dataclasses.dataclass(frozen=True)
class EmbeddingColumn:
    """An embedding of a categorical column.

    Attributes:
      categorical_column: the `CategoricalColumn`.
      dimension: the embedding dimension.
      combiner: "sum", "mean" or "sqrtn", over the ids of an example.
      initializer: draws the initial values (None: a truncated normal of
        standard deviation 1/sqrt(dimension), as TensorFlow's).
    """

    categorical_column: CategoricalColumn
    dimension: int
    combiner: str = "mean"
    initializer: Any = None

    @property
    def name(self) -> str:
        return f"{self.categorical_column.key}_embedding"

    @property
    def width(self) -> int:
        """Columns of its output: `dimension` per feature it embeds."""
        return self.dimension * self.categorical_column.fields


def embedding_column(
    categorical_column: CategoricalColumn,
    dimension: int,
    combiner: str = "mean",
    initializer: Any = None,
) -> EmbeddingColumn:
    """An embedding column, as `tf.feature_column.embedding_column`.

    Args:
      categorical_column: the ids (`categorical_column_with_*`, or
        `stacked_column`).
      dimension: the embedding's width.
      combiner: "mean" (the default), "sum" or "sqrtn" over an example's ids.
      initializer: `(key, shape, dtype) -> array` for the tables; None for
        TensorFlow's default, `truncated_normal(stddev=1 / sqrt(dimension))`
        (`initializers.truncated_normal`).

    Raises:
      ValueError: dimension < 1 or an unknown combiner, naming the column.
    """
    if not isinstance(categorical_column, CategoricalColumn):
        raise ValueError(
            "embedding_column: categorical_column must be a column made by "
            "fc.categorical_column_with_* or fc.stacked_column, got "
            f"{type(categorical_column).__name__}"
        )
    key = categorical_column.key
    dimension = _numerics.python_int(dimension)
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValueError(
            f"column '{key}': dimension must be an int >= 1, got {dimension!r}"
        )
    combiners.check_combiner(combiner, key)
    return EmbeddingColumn(categorical_column, dimension, combiner, initializer)


def ordered(feature_columns: Sequence[EmbeddingColumn]) -> list[EmbeddingColumn]:
    """The columns by name, as TensorFlow's input layer takes them; checked."""
    for column in feature_columns:
        if not isinstance(column, EmbeddingColumn):
            kind = type(column).__name__
            raise ValueError(f"feature_columns must be embedding columns, got {kind}")
    ordered = sorted(feature_columns, key=lambda c: c.name)
    names = [c.name for c in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"feature_columns repeat a column: {names}")
    return ordered
