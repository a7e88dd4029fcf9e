"""Bytes of a column in training and in its export, against a plain dynamic
table with a row for every id seen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import serving
from adaptive_jax import table as table_lib
from adaptive_jax.column import adaptive, statistics
from adaptive_jax.persist import _rows

KEY_BYTES, COUNTER_BYTES = 8, 4  # an int64 key; an int32 freq or version


def _tree_bytes(tree: Any) -> int:
    """Bytes of the arrays (or shapes) of a tree."""
    leaves = jax.tree.leaves(tree)
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves)


def _plain_row_bytes(column_state: adaptive.ColumnState) -> int:
    """Training bytes per row of a plain dynamic table for this column: values,
    slots, key, index and counters, as this column's own tables hold them."""
    if column_state.dynamic is not None:
        dynamic = column_state.dynamic
        return _tree_bytes(dynamic) // math.prod(dynamic.values.shape[:-1])
    static = column_state.static
    rows = static.values.shape[0]
    table = jax.eval_shape(lambda: table_lib.DynamicTable.create(rows))
    return _tree_bytes((static.values, static.slots, table)) // rows


def size_report(
    state: Mapping[str, adaptive.ColumnState], exported: serving.Export
) -> dict[str, dict[str, float]]:
    """Bytes of each column, and in all (`"total"`).

    Per column: `training_bytes` (the whole state: tables, index, slots, sketch,
    statistics), `export_bytes`, `live_rows`, `exported_rows`, `distinct_ids`
    (the statistics' HyperLogLog estimate of the ids seen), and what a plain
    dynamic table with a row for every id seen would need:
    `plain_dynamic_bytes` in training (values, optimizer slots, key, index,
    counters) and `plain_dynamic_export_bytes` exported in float32.

    Raises:
      ValueError: the export lacks a column of the state.
    """
    report, total = {}, {}
    for name, column_state in sorted(state.items()):
        column = exported.columns.get(name)
        if column is None:
            raise ValueError(f"column '{name}': not in the export")
        distinct = round(statistics.distinct_ids(column_state.stats.distinct))
        live = 0
        if column_state.dynamic is not None:
            live = int(np.sum(_rows.rows_of(column_state.dynamic).live))
        row_export = KEY_BYTES + 4 * column.dimension + 2 * COUNTER_BYTES
        report[name] = {
            "training_bytes": _tree_bytes(column_state),
            "export_bytes": column.nbytes,
            "live_rows": live,
            "exported_rows": int(column.keys.size),
            "distinct_ids": distinct,
            "plain_dynamic_bytes": distinct * _plain_row_bytes(column_state),
            "plain_dynamic_export_bytes": distinct * row_export,
        }
        for field, value in report[name].items():
            total[field] = total.get(field, 0) + value
    report["total"] = total
    return report
