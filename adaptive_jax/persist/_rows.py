"""A trained dynamic table's rows as an export sees them: the live ones, chosen
and ordered by key, and their arrays on the host."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import ml_dtypes
import numpy as np

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import partitioned

VALUE_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


class Rows(NamedTuple):
    """A dynamic table's rows, its partitions' end to end."""

    live: jax.Array  # [rows] bool
    keys: jax.Array  # [rows, 2] uint32
    freq: jax.Array  # [rows] int32
    last_step: jax.Array  # [rows] int32
    values: jax.Array  # [rows, dim]


@jax.jit
def _rows_of(dynamic: Any) -> Rows:
    table = dynamic.table
    if not partitioned.is_partitioned(dynamic):
        live = table_lib.live_rows(table)
        return Rows(live, table.row_keys, table.freq, table.last_step, dynamic.values)
    live = jax.vmap(table_lib.live_rows)(table)
    fields = (live, table.row_keys, table.freq, table.last_step, dynamic.values)
    return Rows(*(x.reshape((-1,) + x.shape[2:]) for x in fields))


def rows_of(dynamic: Any) -> Rows:
    """The rows, on the host (numpy): one compiled program, not an eager op
    (and a compile) per step of the way; the selections that follow, whose
    shapes change from one export to the next, run in numpy."""
    return Rows(*(np.asarray(x) for x in _rows_of(dynamic)))


def selected(
    rows: Rows, *, drop_zero_rows: bool, top_k: int | None, score: str
) -> tuple[np.ndarray, np.ndarray]:
    """The rows to export and their keys, ascending by key."""
    live = np.asarray(rows.live)
    if drop_zero_rows:
        live = live & np.any(np.asarray(rows.values) != 0, axis=1)
    chosen = np.flatnonzero(live).astype(np.int32)
    stored = np.asarray(rows.keys)[chosen]
    keys = ids_lib.to_numpy(ids_lib.Ids(stored[:, 0], stored[:, 1]))
    if top_k is not None and top_k < chosen.size:
        scores = {
            "freq": lambda: np.asarray(rows.freq)[chosen],
            "version": lambda: np.asarray(rows.last_step)[chosen],
            "norm": lambda: np.sum(
                np.square(np.asarray(rows.values, np.float32)[chosen]), axis=1
            ),
        }
        best = np.lexsort((keys, -np.asarray(scores[score]())))[:top_k]
        chosen, keys = chosen[best], keys[best]
    order = np.argsort(keys)
    return chosen[order], keys[order]


def arrays(
    rows: Rows, chosen: np.ndarray, keys: np.ndarray, value_dtype: str
) -> dict[str, np.ndarray]:
    """The `keys`, values, freqs and versions of the `chosen` rows, on the host:
    the row fields of an export or a delta."""
    return {
        "keys": keys,
        "values": np.asarray(rows.values)[chosen].astype(VALUE_DTYPES[value_dtype]),
        "freqs": np.asarray(rows.freq)[chosen],
        "versions": np.asarray(rows.last_step)[chosen],
    }


def no_rows(dimension: int, value_dtype: str) -> dict[str, np.ndarray]:
    """The row fields of an export or a delta without any row."""
    return {
        "keys": np.zeros(0, np.int64),
        "values": np.zeros((0, dimension), VALUE_DTYPES[value_dtype]),
        "freqs": np.zeros(0, np.int32),
        "versions": np.zeros(0, np.int32),
    }
