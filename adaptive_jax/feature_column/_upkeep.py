"""The columns' upkeep between steps: eviction passes, statistics and counts.

`evict` and `maybe_evict` run each column's eviction policies (O(capacity),
jitted); `summary` reads the counters kept in the state; `counts` tells how
often a column saw given keys.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import adaptive, eviction, partitioned, statistics
from adaptive_jax.feature_column import _checks
from adaptive_jax.feature_column._find import tables
from adaptive_jax.feature_column._layer import on_layout, optimizers
from adaptive_jax.feature_column._specs import EmbeddingColumn, ordered
from adaptive_jax.ids import _device_hash
from adaptive_jax.table import _sketch


def _fresh_slots(column: EmbeddingColumn, optimizer: Any) -> Any:
    _, dynamic_spec = optimizers(column, optimizer)
    return dynamic_spec.init_slots(jnp.zeros((column.dimension,), jnp.float32))


@functools.partial(jax.jit, static_argnames=("columns", "optimizer", "every", "layout"))
def _evicted(
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    every: int | None,
    layout: Any,
) -> dict[str, adaptive.ColumnState]:
    """`evict` and `maybe_evict`, jitted, so that they run fast eagerly too: each
    column's eviction policies; with `every`, only at the steps that are
    multiples of it."""

    def per_device(state, axis_name=None):
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

    return on_layout(layout, per_device, (state,), ("state",), "state")


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

    Raises:
      ValueError: a state not made for these columns and optimizer, naming
        the column.
    """
    columns = tuple(ordered(feature_columns))
    _checks.check_state(state, columns, optimizer)
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
    every = _numerics.python_int(every)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"maybe_evict: every must be an int >= 1, got {every!r}")
    columns = tuple(ordered(feature_columns))
    _checks.check_state(state, columns, optimizer)
    return _evicted(
        dict(state), columns=columns, optimizer=optimizer, every=every, layout=layout
    )


def summary(state: Any) -> dict[str, dict]:
    """`statistics.summary` of each column, on the host: cheap enough to log
    every step. `state` is `init_state`'s dict, or anything holding the
    tables: a linen `aj.nn.TrainState` or its variables, an NNX model."""
    found = tables(state, "summary")
    return {name: statistics.summary(column) for name, column in found.items()}


def counts(
    state: Any,
    column: EmbeddingColumn,
    keys: ids_lib.IdsLike,
) -> np.ndarray:
    """How often a column with a dynamic table saw each key: its row's `freq` if
    it has a row, else its count in the admission sketch (an upper bound), else
    0. On the host; `keys` are the dynamic table's keys. `state` as `summary`
    takes it."""
    state = tables(state, "counts")
    _checks.check_state(state, [column], None)
    if column.categorical_column.ev_option is None:
        raise ValueError(
            f"column '{column.categorical_column.key}' has no dynamic table: only "
            "the dynamic table and its admission counts count keys"
        )
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
