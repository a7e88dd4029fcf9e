"""Read-only lookup over an export: the training lookup's results, no insertion.

`build` turns an export into device arrays and a key -> row index, once.
`lookup` then gives, for the same ids, what the training input layer gives: an
id with a row reads it (unless its routing mask, if given, says static); any
other id reads its static bucket, or in a plain dynamic column the starting
value it would get (`default_values`) or, with an admission filter, the
no-permission value; combined per example by the column's combiner, columns
concatenated in the order of their names. An id whose row the training lookup
would create now starts from exactly that value, so the results agree for
new ids too. Nothing is counted and nothing changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import combiners, stacking
from adaptive_jax.ids import _columns, _host_ids
from adaptive_jax.serving._format import ColumnExport, Export
from adaptive_jax.table import _host


@struct.dataclass
class ServingColumn:
    """One column ready to serve.

    Attributes:
      static: the static table, or None.
      default_values: a plain dynamic column's starting values, or None.
      table: the index of the exported keys, key `i` at row `i`, or None when
        the export holds no rows.
      values: `[table capacity, dimension]`, the rows, or None with `table`.
      column: the export's settings (static under jit).
    """

    static: jax.Array | None
    default_values: jax.Array | None
    table: table_lib.DynamicTable | None
    values: jax.Array | None
    column: Settings = struct.field(pytree_node=False)


def _capacity(num_keys: int) -> int:
    """Rows for `num_keys`: a power of two, so that exports of about the same
    size share their compiled lookup."""
    return 1 << max(0, num_keys - 1).bit_length()


def _index(name: str, keys: np.ndarray) -> table_lib.DynamicTable:
    """A table holding `keys` (distinct) at rows 0, 1, ... in their order,
    built on the host (`table._host`): nothing to compile."""
    try:
        return _host.holding(keys, _capacity(keys.size))
    except ValueError as error:
        raise ValueError(
            f"column '{name}': the export's keys could not be indexed ({error}); "
            "export them from a table (export.export)"
        ) from None


@dataclasses.dataclass(frozen=True)
class Settings:
    """A column's settings, hashable: static under jit."""

    key: str
    dtype: str
    kind: str
    dimension: int
    combiner: str
    hash_bucket_size: int | None
    no_permission_value: float
    members: tuple[tuple[str, int | None], ...] | None

    @property
    def fields(self) -> int:
        return 1 if self.members is None else len(self.members)

    @classmethod
    def of(cls, column: ColumnExport) -> Settings:
        return cls(
            **{
                field.name: getattr(column, field.name)
                for field in dataclasses.fields(cls)
            }
        )


def build(exported: Export) -> dict[str, ServingColumn]:
    """Each column's arrays on the device and its index of keys, once per export.

    Raises:
      ValueError: keys that are not distinct (a hand-made export).
    """
    built = {}
    for name, column in exported.columns.items():
        table = values = None
        if column.keys.size:
            table = _index(name, column.keys)
            rows = np.zeros((table.capacity, column.dimension), column.values.dtype)
            rows[: column.keys.size] = column.values
            values = jnp.asarray(rows)
        built[name] = ServingColumn(
            static=None if column.static is None else jnp.asarray(column.static),
            default_values=(
                None
                if column.default_values is None
                else jnp.asarray(column.default_values)
            ),
            table=table,
            values=values,
            column=Settings.of(column),
        )
    return built


def prepare(
    built: Mapping[str, ServingColumn],
    features: Mapping[str, Any],
    *,
    masks: Mapping[str, Any] | None = None,
    size: int | None = None,
    int_buckets: str = "device",
) -> dict[str, _host_ids.ColumnIds]:
    """Raw features to each column's `ColumnIds`, on the host, as in training.

    Args:
      built: `build`'s output.
      features: a dict from column key to ids (any form the input layer takes).
      masks: optional routing masks of adaptive columns, by column key (one 0/1
        per id); without one, an id with a row reads it.
      size: a fixed padded number of ids per column; None for powers of two.
      int_buckets: "device" (int ids' static buckets computed in the lookup)
        or "host" (here), as `feature_column.prepare`: the same buckets.

    Raises:
      ValueError: a missing feature, a mask for a column that is not adaptive or
        of the wrong length, ids of the wrong kind, or batches of different
        sizes; each names the column.
    """
    _columns.check_int_buckets(int_buckets)
    masks = dict(masks or {})
    adaptive_keys = {
        key
        for c in built.values()
        if c.column.kind == "adaptive"
        for key in _feature_keys(c.column)
    }
    _host_ids.check_masks(masks, adaptive_keys, "masks")
    prepared, batch_sizes, singles = {}, set(), {}
    for name, serving_column in built.items():
        column = serving_column.column
        if column.members is not None:
            members = [stacking.Member(*m) for m in column.members]
            member_masks = {m.key: masks[m.key] for m in members if m.key in masks}
            prepared[name], examples = stacking.column_ids(
                features,
                key=column.key,
                dtype=column.dtype,
                members=members,
                masks=member_masks or None,
                size=size,
                int_buckets=int_buckets,
            )
            batch_sizes.add(examples)
            continue
        _host_ids.check_present(features, column.key)
        singles[name] = _columns.Single(
            column.key, column.dtype, column.hash_bucket_size, masks.get(column.key)
        )
    together, examples = _columns.single_column_ids(
        features, singles, size=size, int_buckets=int_buckets
    )
    prepared.update(together)
    _host_ids.one_batch_size(batch_sizes | examples)
    return {name: prepared[name] for name in built}


def _feature_keys(column: Settings) -> tuple[str, ...]:
    if column.members is None:
        return (column.key,)
    return tuple(key for key, _ in column.members)


def _column_values(
    serving_column: ServingColumn, inputs: _host_ids.ColumnIds
) -> jax.Array:
    """`[size, dimension] float32`: the value each id reads."""
    batch, column = inputs.ids, serving_column.column
    has_row = jnp.zeros(batch.valid.shape, bool)
    rows = jnp.zeros(batch.valid.shape, jnp.int32)
    if serving_column.table is not None:
        rows = table_lib.lookup(serving_column.table, batch.values, valid=batch.valid)
        has_row = rows >= 0
        if inputs.to_dynamic is not None:
            has_row &= inputs.to_dynamic
    if serving_column.static is not None:
        fallback = serving_column.static[jnp.where(has_row, 0, inputs.buckets)]
    elif serving_column.default_values is not None:
        defaults = serving_column.default_values
        fallback = defaults[ids_lib.remainder(batch.values, defaults.shape[0])]
    else:
        shape = (batch.valid.shape[0], column.dimension)
        fallback = jnp.full(shape, column.no_permission_value, jnp.float32)
    fallback = fallback.astype(jnp.float32)
    if serving_column.table is None:
        return fallback
    values = serving_column.values[jnp.where(has_row, rows, 0)].astype(jnp.float32)
    return jnp.where(has_row[:, None], values, fallback)


@jax.jit
def _lookup(
    built: dict[str, ServingColumn], prepared: dict[str, _host_ids.ColumnIds]
) -> jax.Array:
    outputs = []
    for name in sorted(built):
        column, batch = built[name].column, prepared[name].ids
        scale = combiners.scales(
            batch.row_ids, batch.weights, batch.valid, batch.batch_size, column.combiner
        )
        members = None
        if column.members is not None:
            members = tuple(stacking.Member(*m) for m in column.members)
        inputs = stacking.step_buckets(prepared[name], column.hash_bucket_size, members)
        values = _column_values(built[name], inputs)
        combined = combiners.combine(values, batch.row_ids, scale, batch.batch_size)
        examples = batch.batch_size // column.fields  # a stacked column's fields
        outputs.append(combined.reshape(examples, column.fields * column.dimension))
    return jnp.concatenate(outputs, axis=1)


def lookup(
    built: Mapping[str, ServingColumn],
    features: Mapping[str, Any],
    *,
    masks: Mapping[str, Any] | None = None,
    size: int | None = None,
) -> jax.Array:
    """The embeddings of `features`: `[batch, sum of dimensions] float32`.

    Jittable when `features` is `prepare`'s output; raw features are prepared
    here first, on the host, with `masks` and `size` (see `prepare`).
    """
    built = dict(built)
    if not all(isinstance(features.get(name), _host_ids.ColumnIds) for name in built):
        features = prepare(built, features, masks=masks, size=size)
    return _lookup(built, {name: features[name] for name in built})
