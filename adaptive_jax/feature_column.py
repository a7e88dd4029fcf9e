"""The TensorFlow / DeepRec face: feature columns and a functional input layer.

Columns, with DeepRec's names (frozen dataclasses: hashable, so static under jit):

- `categorical_column_with_adaptive_embedding(key, hash_bucket_size, ...)`: a
  static hash-bucket table for rare ids and a dynamic table for frequent ones;
- `categorical_column_with_embedding(key, ...)`: a plain dynamic table;
- `categorical_column_with_hash_bucket(key, hash_bucket_size, ...)`: a plain
  static table;
- `embedding_column(categorical_column, dimension, combiner, initializer)`.

The input layer is functional, state in and state out, and split so that the
step can be jitted: `prepare` turns raw features into `ColumnIds` on the host
(TensorFlow's buckets, DeepRec's keys, the masks, padding); `input_layer` looks
up and combines (inserting and migrating dynamic-routed ids); `apply_gradients`
feeds the gradient of its output back to the tables as sparse updates. Columns
are taken in the order of their names, as `tf.feature_column.input_layer` does.

Example (the seed program: `examples/seed_example.py`):
  >>> import jax, numpy as np
  >>> from adaptive_jax import feature_column as fc, initializers, optim, sparse
  >>> column = fc.categorical_column_with_adaptive_embedding(
  ...     "col_emb", hash_bucket_size=100, dtype="int64")
  >>> W = fc.embedding_column(column, dimension=3, initializer=initializers.ones())
  >>> opt = optim.ftrl(0.1, l1_regularization_strength=2.0)
  >>> state = fc.init_state([W], opt, jax.random.key(0))
  >>> features = {"col_emb": sparse.from_ragged([[1], [2]])}
  >>> emb, state, residuals = fc.input_layer(
  ...     features, [W], state, optimizer=opt,
  ...     adaptive_mask_tensors={"col_emb": np.array([1, 0])})
  >>> emb.shape
  (2, 3)
  >>> state = fc.apply_gradients(state, residuals, 2 * jax.numpy.ones((2, 3)), [W], opt)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import (
    _device_hash,
    _host_ids,
    _sketch,
    adaptive,
    combiners,
    eviction,
    initializers,
    optim,
    partitioned,
    stacking,
    statistics,
)
from adaptive_jax import ev as ev_lib
from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.options import EmbeddingVariableOption

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


def _check_buckets(hash_bucket_size: int, key: str) -> None:
    if isinstance(hash_bucket_size, bool) or not isinstance(hash_bucket_size, int):
        raise ValueError(
            f"column '{key}': hash_bucket_size must be an int, got {hash_bucket_size!r}"
        )
    if not 1 <= hash_bucket_size <= 2**31 - 1:
        raise ValueError(
            f"column '{key}': hash_bucket_size must be in [1, 2**31 - 1], got "
            f"{hash_bucket_size}"
        )


def _check_partitions(partition_num: int | None, key: str) -> None:
    if partition_num is None:
        return
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


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column: where its ids go. Build it with a factory below.

    Attributes:
      key: the feature's name in the features dict.
      dtype: "string", "int64" or "int32".
      hash_bucket_size: buckets of the static table, or None (no static table).
      ev_option: options of the dynamic table, or None (no dynamic table).
      adaptive: whether ids are routed by a mask (both tables).
      migration: how promoted rows start: "deeprec", "warm", "copy" (from
        their bucket), "none" (from the initializer).
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
    migration: str = "deeprec"
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
    migration: str = "deeprec",
) -> CategoricalColumn:
    """DeepRec's adaptive column: a static table of `hash_bucket_size` buckets
    for rare ids, a dynamic table (`ev_option.capacity` rows) for frequent ones.

    Each id goes where its mask says (`adaptive_mask_tensors`, 1: dynamic). An
    id entering the dynamic table starts from its bucket's value (`migration`
    chooses its optimizer slots: see `adaptive`).

    Raises:
      ValueError: a bad hash_bucket_size, dtype or migration, naming the column.
    """
    _check_buckets(hash_bucket_size, key)
    _check_partitions(partition_num, key)
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
    _check_partitions(partition_num, key)
    return CategoricalColumn(
        key, _dtype_name(dtype, key), None, ev_option, partition_num=partition_num
    )


def categorical_column_with_hash_bucket(
    key: str, hash_bucket_size: int, dtype: Any = "string"
) -> CategoricalColumn:
    """A plain static table: id -> `Fingerprint64(str(id)) % hash_bucket_size`."""
    _check_buckets(hash_bucket_size, key)
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

    Raises:
      ValueError: dimension < 1 or an unknown combiner, naming the column.
    """
    key = categorical_column.key
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


def _optimizers(column: EmbeddingColumn, optimizer: Any) -> tuple[Any, Any]:
    """The specs of the static and the dynamic table (DeepRec's row-wise L1)."""
    spec = optim.spec_of(optimizer)
    option = column.categorical_column.ev_option
    dynamic = adaptive.with_l1_mode(spec, option.l1_mode) if option else spec
    return adaptive.with_l1_mode(spec, "coordinate"), dynamic


def init_state(
    feature_columns: Sequence[EmbeddingColumn], optimizer: Any, key: jax.Array
) -> dict[str, adaptive.ColumnState]:
    """The state of each column, by name: tables drawn from the initializers,
    optimizer slots at their initial values, empty dynamic tables. A column with
    `partition_num` P gets P partitions of `ceil(capacity / P)` rows each, along
    a leading axis of its dynamic table and sketch."""
    state = {}
    for column, column_key in zip(
        ordered(feature_columns),
        jax.random.split(key, len(feature_columns)),
        strict=True,
    ):
        categorical = column.categorical_column
        dim = column.dimension
        init = column.initializer or initializers.truncated_normal(
            stddev=1 / math.sqrt(dim)
        )
        static_key, default_key = jax.random.split(column_key)
        static_spec, dynamic_spec = _optimizers(column, optimizer)
        static = dynamic = defaults = sketch = None
        if categorical.hash_bucket_size is not None:
            values = init(static_key, (categorical.hash_bucket_size, dim), jnp.float32)
            static = adaptive.StaticTable.create(values, static_spec)
        if categorical.ev_option is not None:
            option = categorical.ev_option
            parts = categorical.partition_num or 1
            capacity = -(-option.capacity // parts)  # rows of each partition
            dynamic = ev_lib.EmbeddingVariable.create(capacity, dim, dynamic_spec)
            if option.filter_option is not None:
                shape = option.filter_option.sketch_shape(capacity, parts)
                sketch = _sketch.Sketch.create(*shape)
            if categorical.partition_num is not None:
                dynamic = partitioned.stacked(dynamic, parts)
                sketch = partitioned.stacked(sketch, parts)
            if categorical.hash_bucket_size is None or categorical.migration == "none":
                draw = option.init_option.initializer or init
                shape = (option.init_option.default_value_dim, dim)
                defaults = draw(default_key, shape, jnp.float32)
        state[column.name] = adaptive.ColumnState(
            static,
            dynamic,
            defaults,
            sketch,
            statistics.ColumnStats.create(),
            jnp.zeros([], jnp.int32),
        )
    return state


def _routing_mask(categorical: CategoricalColumn, masks: Mapping[str, Any]) -> Any:
    """The routing mask of an adaptive column as given; None when its admission
    filter routes."""
    key = categorical.key
    if key in masks:
        return masks[key]
    if categorical.ev_option.filter_option is None:
        raise ValueError(
            f"column '{key}' is adaptive: give adaptive_mask_tensors['{key}'] (one "
            "0/1 per id) or an admission policy (ev_option.filter_option)"
        )
    return None


def prepare(
    features: Mapping[str, Any],
    feature_columns: Sequence[EmbeddingColumn],
    *,
    adaptive_mask_tensors: Mapping[str, Any] | None = None,
    size: int | None = None,
) -> dict[str, adaptive.ColumnIds]:
    """Turns raw features into the `ColumnIds` of each column, on the host.

    Args:
      features: a dict from feature key to the feature's ids: `SparseIds`, a
        dense padded array (-1 or "" missing), ragged lists, or an object with
        `indices`, `values` and `dense_shape` (a `tf.SparseTensor`). A stacked
        column reads one feature per member.
      feature_columns: the embedding columns.
      adaptive_mask_tensors: a dict from feature key to a per-id 0/1 mask, one
        value per sparse id, in the order of the sparse values.
      size: a fixed padded number of ids per column (a stacked column's: of
        all its members); None for powers of two.

    Raises:
      ValueError: a missing feature, a mask of the wrong length, a mask for a
        column that is not adaptive, ids of the wrong kind, or batches of
        different sizes; each names the column.
    """
    columns = ordered(feature_columns)
    masks = dict(adaptive_mask_tensors or {})
    adaptive_keys = {
        k
        for c in columns
        if c.categorical_column.adaptive
        for k in c.categorical_column.feature_keys
    }
    for key in masks:
        if key not in adaptive_keys:
            raise ValueError(
                f"adaptive_mask_tensors['{key}']: no adaptive column has key '{key}'"
            )
    prepared, batch_sizes = {}, set()
    for column in columns:
        categorical = column.categorical_column
        if categorical.members is not None:
            prepared[column.name], examples = _prepare_stacked(
                features, categorical, masks, size
            )
            batch_sizes.add(examples)
            continue
        if categorical.key not in features:
            raise ValueError(
                f"column '{categorical.key}': feature '{categorical.key}' is missing "
                f"from the features (they have {sorted(features)})"
            )
        batch = _host_ids.as_sparse(features[categorical.key], categorical.key, size)
        mask = None
        if categorical.adaptive:
            mask = _routing_mask(categorical, masks)
        batch_sizes.add(batch.batch_size)
        prepared[column.name] = _host_ids.column_ids(
            batch,
            key=categorical.key,
            dtype=categorical.dtype,
            hash_bucket_size=categorical.hash_bucket_size,
            mask=mask,
        )
    if len(batch_sizes) > 1:
        raise ValueError(f"features have different batch sizes: {sorted(batch_sizes)}")
    return prepared


def _prepare_stacked(
    features: Mapping[str, Any],
    categorical: CategoricalColumn,
    masks: Mapping[str, Any],
    size: int | None,
) -> tuple[adaptive.ColumnIds, int]:
    """A stacked column's `ColumnIds` and its number of examples."""
    member_masks = {k: masks[k] for k in categorical.feature_keys if k in masks}
    if (
        categorical.adaptive
        and not member_masks
        and categorical.ev_option.filter_option is None
    ):
        raise ValueError(
            f"column '{categorical.key}' is adaptive: give adaptive_mask_tensors for "
            f"its members {list(categorical.feature_keys)} (one 0/1 per id) or an "
            "admission policy (ev_option.filter_option)"
        )
    return stacking.column_ids(
        features,
        key=categorical.key,
        dtype=categorical.dtype,
        members=categorical.members,
        masks=member_masks or None,
        size=size,
    )


def input_layer(
    features: Mapping[str, Any],
    feature_columns: Sequence[EmbeddingColumn],
    state: Mapping[str, adaptive.ColumnState],
    *,
    optimizer: Any,
    adaptive_mask_tensors: Mapping[str, Any] | None = None,
    layout: Any = None,
) -> tuple[jax.Array, dict[str, adaptive.ColumnState], dict[str, adaptive.Residuals]]:
    """The embeddings of the columns, concatenated: `[batch, sum of dimensions]`.

    Inserts the dynamic-routed ids that have no row yet (migrating them from
    their buckets) and returns the new state, and the residuals that
    `apply_gradients` needs. Jittable when `features` is `prepare`'s output
    (pass `optimizer` and the columns as static); raw features are prepared
    here first, on the host.

    Args:
      features: `prepare`'s output, or raw features (see `prepare`).
      feature_columns: the embedding columns.
      state: `init_state`'s output; donate it under jit.
      optimizer: the optimizer of the tables (`optim.ftrl(...)`, ...): new rows
        get its slots.
      adaptive_mask_tensors: with raw features, the routing masks.
      layout: a `sharding.Layout` to run over a device mesh (the features from
        `sharding.prepare`, the state from `Layout.place`), or None.

    Returns:
      `(embeddings, state, residuals)`.
    """
    columns = tuple(ordered(feature_columns))
    if layout is not None:
        layout.check(columns)
    if not all(isinstance(features.get(c.name), adaptive.ColumnIds) for c in columns):
        if layout is not None:
            raise ValueError(
                "input_layer with a layout takes features from sharding.prepare"
            )
        features = prepare(
            features, columns, adaptive_mask_tensors=adaptive_mask_tensors
        )
    features = {c.name: features[c.name] for c in columns}
    return _input_layer(
        features, dict(state), columns=columns, optimizer=optimizer, layout=layout
    )


def _lookup_columns(
    features: dict[str, adaptive.ColumnIds],
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, adaptive.ColumnState], dict[str, adaptive.Residuals]]:
    """The lookup of every column, on one device (`axis_name` under shard_map)."""
    outputs, residuals = [], {}
    for column in columns:
        categorical, name = column.categorical_column, column.name
        option = categorical.ev_option
        _, dynamic_spec = _optimizers(column, optimizer)
        settings = dict(
            combiner=column.combiner,
            dynamic_optimizer=dynamic_spec,
            migration=categorical.migration,
            admission=option.filter_option if option else None,
            no_permission_value=(
                option.init_option.default_value_no_permission if option else 0.0
            ),
            axis_name=axis_name,
            split_static=layout is not None and layout.splits_static(name),
        )
        if categorical.partition_num is None:
            looked_up = adaptive.lookup(state[name], features[name], **settings)
        else:
            looked_up = partitioned.lookup(
                state[name],
                features[name],
                num_partitions=categorical.partition_num,
                limit=None if layout is None else layout.limit(name),
                **settings,
            )
        embeddings, state[name], residuals[name] = looked_up
        examples = embeddings.shape[0] // categorical.fields
        outputs.append(
            embeddings.reshape(examples, column.width)
        )  # fields side by side
    return jnp.concatenate(outputs, axis=1), state, residuals


@functools.partial(jax.jit, static_argnames=("columns", "optimizer", "layout"))
def _input_layer(
    features: dict[str, adaptive.ColumnIds],
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any,
) -> tuple[jax.Array, dict[str, adaptive.ColumnState], dict[str, adaptive.Residuals]]:
    """`input_layer` on prepared features; jitted, so that it runs fast eagerly too."""
    body = functools.partial(
        _lookup_columns, columns=columns, optimizer=optimizer, layout=layout
    )
    if layout is None:
        return body(features, state)
    split, specs = layout.split(), layout.state_specs(state)
    return layout.run(body, (features, state), (split, specs), (split, specs, split))


def apply_gradients(
    state: Mapping[str, adaptive.ColumnState],
    residuals: Mapping[str, adaptive.Residuals],
    d_embeddings: jax.Array,
    feature_columns: Sequence[EmbeddingColumn],
    optimizer: Any,
    *,
    layout: Any = None,
) -> dict[str, adaptive.ColumnState]:
    """Sparse optimizer steps from the gradient of `input_layer`'s output. Jittable.

    Args:
      state: the state `input_layer` returned; donate it under jit.
      residuals: `input_layer`'s residuals.
      d_embeddings: `[batch, sum of dimensions]`, the gradient of the embeddings.
      feature_columns: the columns given to `input_layer`.
      optimizer: the optimizer of the tables.
      layout: the `sharding.Layout` given to `input_layer`, or None.
    """
    columns = tuple(ordered(feature_columns))
    total = sum(c.width for c in columns)
    if d_embeddings.shape[-1] != total:
        raise ValueError(
            f"d_embeddings has {d_embeddings.shape[-1]} columns, the embeddings {total}"
        )
    return _apply_gradients(
        dict(state),
        dict(residuals),
        d_embeddings,
        columns=columns,
        optimizer=optimizer,
        layout=layout,
    )


def _update_columns(
    state: dict[str, adaptive.ColumnState],
    residuals: dict[str, adaptive.Residuals],
    d_embeddings: jax.Array,
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any = None,
    axis_name: str | None = None,
) -> dict[str, adaptive.ColumnState]:
    """The sparse update of every column, on one device (`axis_name` under
    shard_map)."""
    start = 0
    for column in columns:
        static_spec, dynamic_spec = _optimizers(column, optimizer)
        gradient = d_embeddings[:, start : start + column.width]
        gradient = gradient.reshape(-1, column.dimension)  # a stacked column's rows
        start += column.width
        update = (
            adaptive.apply_gradients
            if column.categorical_column.partition_num is None
            else partitioned.apply_gradients
        )
        state[column.name] = update(
            state[column.name],
            residuals[column.name],
            gradient,
            static_optimizer=static_spec,
            dynamic_optimizer=dynamic_spec,
            axis_name=axis_name,
            split_static=layout is not None and layout.splits_static(column.name),
            static_limit=None if layout is None else layout.static_limit(column.name),
        )
    return state


@functools.partial(jax.jit, static_argnames=("columns", "optimizer", "layout"))
def _apply_gradients(
    state: dict[str, adaptive.ColumnState],
    residuals: dict[str, adaptive.Residuals],
    d_embeddings: jax.Array,
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any,
) -> dict[str, adaptive.ColumnState]:
    """`apply_gradients`, jitted."""
    body = functools.partial(
        _update_columns, columns=columns, optimizer=optimizer, layout=layout
    )
    if layout is None:
        return body(state, residuals, d_embeddings)
    split, specs = layout.split(), layout.state_specs(state)
    return layout.run(
        body, (state, residuals, d_embeddings), (specs, split, split), specs
    )


def _fresh_slots(column: EmbeddingColumn, optimizer: Any) -> Any:
    _, dynamic_spec = _optimizers(column, optimizer)
    return dynamic_spec.init_slots(jnp.zeros((column.dimension,), jnp.float32))


def _evict_columns(
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    every: int | None,
    axis_name: str | None = None,
) -> dict[str, adaptive.ColumnState]:
    """Each column's eviction policies, on one device; with `every`, only at
    the steps that are multiples of it."""
    for column in columns:
        option = column.categorical_column.ev_option
        if option is None or not option.evict_policies:
            continue
        policies, fresh = option.evict_policies, _fresh_slots(column, optimizer)
        if column.categorical_column.partition_num is None:
            run = functools.partial(
                eviction.evict, policies=policies, fresh_slots=fresh
            )
        else:
            run = functools.partial(
                partitioned.evict,
                policies=policies,
                fresh_slots=fresh,
                axis_name=axis_name,
            )
        column_state = state[column.name]
        if every is None:
            state[column.name] = run(column_state)
        else:
            state[column.name] = jax.lax.cond(
                column_state.step % every == 0, run, lambda s: s, column_state
            )
    return state


@functools.partial(jax.jit, static_argnames=("columns", "optimizer", "every", "layout"))
def _evicted(
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    every: int | None,
    layout: Any,
) -> dict[str, adaptive.ColumnState]:
    """`evict` and `maybe_evict`, jitted, so that they run fast eagerly too."""
    body = functools.partial(
        _evict_columns, columns=columns, optimizer=optimizer, every=every
    )
    if layout is None:
        return body(state)
    specs = layout.state_specs(state)
    return layout.run(body, (state,), (specs,), specs)


def evict(
    state: Mapping[str, adaptive.ColumnState],
    feature_columns: Sequence[EmbeddingColumn],
    optimizer: Any,
    *,
    layout: Any = None,
) -> dict[str, adaptive.ColumnState]:
    """Runs each column's eviction policies (`ev_option.evict_option`). Jittable;
    O(capacity). Call it every so many steps, or use `maybe_evict` in the step.

    Args:
      state: the columns' state; donate it under jit.
      feature_columns: the columns.
      optimizer: the optimizer of the tables (evicted rows get fresh slots).
      layout: a `sharding.Layout`, or None.
    """
    columns = tuple(ordered(feature_columns))
    return _evicted(
        dict(state), columns=columns, optimizer=optimizer, every=None, layout=layout
    )


def maybe_evict(
    state: Mapping[str, adaptive.ColumnState],
    feature_columns: Sequence[EmbeddingColumn],
    optimizer: Any,
    *,
    every: int,
    layout: Any = None,
) -> dict[str, adaptive.ColumnState]:
    """`evict` every `every` steps (by each column's step), for use inside a
    jitted training step; otherwise a no-op."""
    if every < 1:
        raise ValueError(f"maybe_evict: every must be >= 1, got {every}")
    columns = tuple(ordered(feature_columns))
    return _evicted(
        dict(state), columns=columns, optimizer=optimizer, every=every, layout=layout
    )


def summary(state: Mapping[str, adaptive.ColumnState]) -> dict[str, dict]:
    """`statistics.summary` of each column, on the host: cheap enough to log
    every step."""
    return {name: statistics.summary(column) for name, column in state.items()}


def counts(
    state: Mapping[str, adaptive.ColumnState],
    column: EmbeddingColumn,
    keys: ids_lib.IdsLike,
) -> np.ndarray:
    """How often a column with a dynamic table saw each key: its row's `freq` if
    it has a row, else its count in the admission sketch (an upper bound), else
    0. On the host; `keys` are the dynamic table's keys."""
    column_state = jax.tree.map(jnp.asarray, state[column.name])  # host arrays too
    flat = ids_lib.as_ids(keys).reshape(-1)
    parts = column.categorical_column.partition_num
    if parts is None:
        return np.asarray(
            _counts(column_state.dynamic.table, column_state.sketch, flat)
        )
    owner = np.asarray(_device_hash.partition(flat, parts))
    result = np.zeros(owner.shape, np.int32)
    for p in range(parts):
        table = jax.tree.map(lambda x, p=p: x[p], column_state.dynamic.table)
        sketch = jax.tree.map(lambda x, p=p: x[p], column_state.sketch)
        result = np.where(owner == p, np.asarray(_counts(table, sketch, flat)), result)
    return result


@jax.jit
def _counts(
    table: table_lib.DynamicTable, sketch: _sketch.Sketch | None, keys: ids_lib.Ids
) -> jax.Array:
    """Each key's row `freq`, else its sketch count, else 0; jitted (eagerly,
    the probe would run op by op)."""
    rows = table_lib.lookup(table, keys)
    freq = table.freq[jnp.maximum(rows, 0)]
    sketched = jnp.zeros_like(rows)
    if sketch is not None:
        sketched = _sketch.estimate(sketch, keys).astype(rows.dtype)
    return jnp.where(rows >= 0, freq, sketched)
