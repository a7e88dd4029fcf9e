"""Bytes of columns in training and in their export, from shapes alone, and
what the admission sketch takes of a budget.

The training bytes are those of every array `init_state` makes, found with
`jax.eval_shape` (nothing is allocated); an export's are those of the arrays
`export.export` copies out of such a state: the static tables, per live row its
key, values, freq and last step, and a plain dynamic table's default values.
So the sizes `size_columns` chooses follow the library's own arrays, and a new
field of the state is counted without a change here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from adaptive_jax.column import options
from adaptive_jax.feature_column import _layer, _specs
from adaptive_jax.table import _index

PROBE = _index.WAYS * 1024  # rows or buckets added to measure what one costs
INDEX_BUCKET = 2 * _index.WAYS * np.dtype(np.int32).itemsize  # an index grows so
SKETCH_SHARE = 0.25  # of the training budget, the most the admission sketch takes


def state_bytes(columns: Sequence[_specs.EmbeddingColumn], optimizer: Any) -> int:
    """Bytes of every array of `init_state(columns, optimizer, key)`, from the
    shapes alone (nothing is allocated).

    Example:
      >>> from adaptive_jax import feature_column as fc, optim
      >>> column = fc.categorical_column_with_hash_bucket("site", 100)
      >>> W = fc.embedding_column(column, dimension=4)
      >>> fc.state_bytes([W], optim.ftrl(0.1)) >= 100 * 4 * 4 * 3  # values, 2 slots
      True
    """
    return tree_bytes(shapes(tuple(columns), optimizer))


def export_bytes_bound(
    columns: Sequence[_specs.EmbeddingColumn], optimizer: Any
) -> int:
    """The most bytes an export of the columns' state can hold: the static
    tables, every row with its key, values, freq and last step, and a plain
    dynamic table's default values (what `export.export` copies)."""
    columns = tuple(columns)
    return export_bytes(shapes(columns, optimizer), columns)


@functools.lru_cache(maxsize=64)
def shapes(columns: tuple[_specs.EmbeddingColumn, ...], optimizer: Any) -> dict:
    """`init_state`'s arrays as shapes and dtypes."""
    return jax.eval_shape(
        functools.partial(_layer.init_state, columns, optimizer), jax.random.key(0)
    )


def tree_bytes(tree: Any) -> int:
    """Bytes of the arrays (or shapes) of a tree."""
    return sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def export_bytes(state: dict, columns: Sequence[_specs.EmbeddingColumn]) -> int:
    """What `export.export` copies out of a state of these shapes, every row
    live and none zero."""
    total = 0
    for column in columns:
        column_state = state[column.name]
        if column_state.static is not None:
            total += tree_bytes(column_state.static.values)
        if column_state.dynamic is not None:
            table, values = column_state.dynamic.table, column_state.dynamic.values
            total += tree_bytes((table.row_keys, values, table.freq, table.last_step))
        option = column.categorical_column.ev_option
        plain = column_state.static is None and option is not None
        if plain and option.filter_option is None:
            total += tree_bytes(column_state.default_values)
    return total


class Costs(NamedTuple):
    """Bytes by budget ("training", "export"): of the least columns (one bucket
    and one row per feature), and of each row and bucket past them."""

    least: dict[str, int]
    row: dict[str, float]
    bucket: dict[str, float]
    sketch: int  # of `least["training"]`, the sketch's counters


def costs(build: Callable, optimizer: Any, keys: list[str], kind: str) -> Costs:
    """What the columns `build(buckets, capacity)` (each a dict by feature)
    cost: measured at one bucket and one row per feature; a row or bucket
    past them costs what `PROBE` more of them add to `PROBE` of them, for the
    first feature (from one, the slope would miss that a small index is held
    at its least number of buckets, and undercount large tables). The
    training bytes have one index bucket per table added: an index grows by
    whole buckets."""
    ones = dict.fromkeys(keys, 1)
    base = build(ones, ones)
    state = shapes(base, optimizer)
    tables = 0 if kind == "static" else len(base)
    least = {
        "training": tree_bytes(state) + tables * INDEX_BUCKET,
        "export": export_bytes(state, base),
    }
    zero = {"training": 0.0, "export": 0.0}

    def slope(grow: Callable[[dict[str, int]], tuple]) -> dict[str, float]:
        small, large = (grow(dict(ones, **{keys[0]: n * PROBE})) for n in (1, 2))
        at_small, at_large = shapes(small, optimizer), shapes(large, optimizer)
        return {
            "training": (tree_bytes(at_large) - tree_bytes(at_small)) / PROBE,
            "export": (export_bytes(at_large, large) - export_bytes(at_small, small))
            / PROBE,
        }

    row = zero if kind == "static" else slope(lambda more: build(ones, more))
    bucket = (
        slope(lambda more: build(more, ones))
        if kind in ("adaptive", "static")
        else zero
    )
    counters = [s.sketch.counts for s in state.values() if s.sketch is not None]
    return Costs(least, row, bucket, tree_bytes(counters))


def sketch_bytes(ids: list[int], filter_freq: int) -> int:
    """Bytes of `CounterFilter` sketches sized for these distinct ids each."""
    return sum(
        options.CounterFilter(filter_freq, max_element_size=n).sketch_bytes()
        for n in ids
    )


def sketch_ids(full: list[int], scale: float) -> list[int]:
    """The distinct ids each sketch is sized for: `scale` of all, at least 1."""
    return [max(1, math.floor(n * scale)) for n in full]


def sketch_reserve(full: list[int], filter_freq: int, budget: int | None) -> int:
    """The bytes kept for the sketches out of a training `budget`: all they
    need for every distinct id if that is at most `SKETCH_SHARE` of it, else
    that share (at least the smallest sketches). It grows with the budget, by
    less than the budget does."""
    whole = sketch_bytes([max(1, n) for n in full], filter_freq)
    if budget is None or whole <= SKETCH_SHARE * budget:
        return whole
    smallest = sketch_bytes(sketch_ids(full, 0.0), filter_freq)
    return max(smallest, math.floor(SKETCH_SHARE * budget))


def sketch_scale(full: list[int], filter_freq: int, reserve: int) -> float:
    """The largest share of the distinct ids whose sketches fit `reserve`."""
    if sketch_bytes([max(1, n) for n in full], filter_freq) <= reserve:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if sketch_bytes(sketch_ids(full, middle), filter_freq) <= reserve:
            low = middle
        else:
            high = middle
    return low


def least_training_budget(other: int, full: list[int], filter_freq: int) -> int:
    """The least training budget that holds `other` bytes and the sketch's
    reserve out of it."""
    if not full:
        return other
    whole = sketch_bytes([max(1, n) for n in full], filter_freq)
    smallest = sketch_bytes(sketch_ids(full, 0.0), filter_freq)
    edge = math.ceil(other / (1 - SKETCH_SHARE))
    candidates = (other + smallest, other + whole, edge, edge + 1)
    return min(
        c for c in candidates if c >= other + sketch_reserve(full, filter_freq, c)
    )
