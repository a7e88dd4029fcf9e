"""Columns sized from a byte budget and a survey of the data: buckets, capacity
and admission threshold chosen for the user, with the reason.

A user states bytes (for the training state, the serving export, or both) and
what one pass over (a sample of) the data found: how often each distinct id of
each feature occurs. `size_columns` returns the columns that fit, each with its
`hash_bucket_size`, its dynamic `capacity` and its `filter_freq`, and a
sentence saying why. The bytes are never estimated by a formula of their own:
they are those of `init_state`'s arrays, measured with `jax.eval_shape`, and an
export's are those of the arrays `export.export` copies out of that state
(the static tables, and per live row its key, values, freq and last step; a
plain dynamic table's default values), so the accounting follows the library.

The rule, for an adaptive column (rows first: a frequent id learns best in a
row of its own; the buckets then share the rest among the rare ids):

1. The least state (one bucket and one row per feature, the statistics, the
   default values, one index bucket per table of slack) is paid first; a
   budget below it is an error that says how much is needed.
2. The admission sketch counts the ids without a row. It is sized for every
   distinct id of the pass if that takes at most `SKETCH_SHARE` of the
   training budget; else for as many as that share holds (it then halves its
   counters more often: a count is a more recent count).
3. Of the bytes left, the rows get up to `ROW_SHARE`: the threshold is the
   lowest (at least `min_filter_freq`) at which the ids reaching it, times
   `headroom`, fit them; each feature gets rows for its ids that reach it.
4. The buckets get the rest (`1 - ROW_SHARE`, or everything past the rows of
   the lowest threshold), shared by the features in proportion to their
   distinct ids, never more than one bucket per distinct id.

Bytes the rows leave at their threshold are not handed to the buckets, and
every share is a fixed fraction rounded down, so that a larger budget never
gives a smaller table (each column's capacity and buckets grow or stay). A
"filtered" column (no buckets) gives the rows everything; a "dynamic" one (no
filter) a row per id as far as the budget goes, shared by distinct ids; a
"static" one spends it all on buckets, shared by distinct ids.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from adaptive_jax import _numerics, optim
from adaptive_jax import table as table_lib
from adaptive_jax.column import options
from adaptive_jax.feature_column import _layer, _specs
from adaptive_jax.table import _index

KINDS = ("adaptive", "filtered", "dynamic", "static")
BUDGETS = ("training", "export")
ROW_SHARE = 0.75  # of the bytes past the least state, the most the rows take
SKETCH_SHARE = 0.25  # of the training budget, the most the admission sketch takes
_PROBE = _index.WAYS * 1024  # rows and buckets added to measure their bytes
_INDEX_BUCKET = 2 * _index.WAYS * np.dtype(np.int32).itemsize  # an index grows so


@dataclasses.dataclass(frozen=True)
class ColumnSize:
    """One feature's sizes, and why.

    Attributes:
      key: the feature.
      distinct: its distinct ids in the pass.
      hash_bucket_size: its static buckets, or None without a static table.
      capacity: its dynamic rows, or None without a dynamic table.
      filter_freq: its admission threshold, or None without a filter.
      reason: one sentence.
    """

    key: str
    distinct: int
    hash_bucket_size: int | None
    capacity: int | None
    filter_freq: int | None
    reason: str


@dataclasses.dataclass(frozen=True)
class Sizing:
    """What `size_columns` chose.

    Attributes:
      sizes: feature key -> `ColumnSize`, in the order given.
      columns: the embedding columns of those sizes (one stacked column, or one
        per feature), for `init_state`.
      training_bytes: every array of their `init_state`.
      export_bytes: the most their export can hold (every row live, none zero).
      budget: the budget by kind ("training", "export").
      reason: how the bytes were shared, in a few sentences.
    """

    sizes: dict[str, ColumnSize]
    columns: tuple[_specs.EmbeddingColumn, ...]
    training_bytes: int
    export_bytes: int
    budget: dict[str, int]
    reason: str


def state_bytes(columns: Sequence[_specs.EmbeddingColumn], optimizer: Any) -> int:
    """Bytes of every array of `init_state(columns, optimizer, key)`, from the
    shapes alone (nothing is allocated)."""
    return _tree_bytes(_shapes(tuple(columns), optimizer))


def export_bytes_bound(
    columns: Sequence[_specs.EmbeddingColumn], optimizer: Any
) -> int:
    """The most bytes an export of the columns' state can hold: the static
    tables, every row with its key, values, freq and last step, and a plain
    dynamic table's default values (`export.export` copies these)."""
    return _export_bytes(_shapes(tuple(columns), optimizer), columns)


def size_columns(
    frequencies: Mapping[str, Any],
    dimension: int,
    optimizer: Any,
    budget: int | Mapping[str, int],
    *,
    kind: str = "adaptive",
    min_filter_freq: int = 2,
    headroom: float = 1.25,
    dtype: str = "string",
    stack_key: str | None = None,
    migration: str = "fitted",
    initializer: Callable | None = None,
    evict_option: Any = None,
) -> Sizing:
    """Columns of `kind` for the features of `frequencies` that fit `budget`.

    See the module's docstring for the rule.

    Args:
      frequencies: feature key -> `[k]` counts, how often each distinct id of
        the feature occurred in the pass (the CTR example's
        `IdCounts.frequency_counts`).
      dimension: the embedding dimension.
      optimizer: the tables' optimizer (`optim.ftrl(...)`, `optim.adagrad(...)`
        or a spec); its slots are measured, not assumed.
      budget: bytes of the training state (an int), or a dict with "training"
        and/or "export" (the serving export, every row counted).
      kind: "adaptive", "filtered", "dynamic" or "static".
      min_filter_freq: the lowest threshold chosen: an id seen once in the pass
        gets no row of its own at the default 2.
      headroom: rows per id expected to reach the threshold (the sketch's
        overestimates, ids the pass missed).
      dtype: the ids' dtype, "string" or "int64".
      stack_key: one stacked column of this key (`stacked_column`); None for
        a column per feature.
      migration, initializer, evict_option: as the columns take them.

    Returns:
      A `Sizing`: the sizes and reasons per feature, the columns, their bytes.

    Example:
      >>> import numpy as np
      >>> from adaptive_jax import feature_column as fc, optim
      >>> counts = {"site": np.array([50, 9, 4, 3, 1, 1, 1]),
      ...           "device": np.array([70, 2])}
      >>> sized = fc.size_columns(counts, 4, optim.ftrl(0.1), 300_000)
      >>> [(s.hash_bucket_size, s.capacity, s.filter_freq)
      ...  for s in sized.sizes.values()]
      [(7, 5, 2), (2, 3, 2)]
      >>> sized.training_bytes <= 300_000
      True

    Raises:
      ValueError: a bad argument, or a budget below the least state of these
        columns (the message says how much that is); each names the option.
    """
    counts = _checked_frequencies(frequencies)
    budget = _checked_budget(budget)
    _check_options(kind, dimension, min_filter_freq, headroom, stack_key)
    keys = list(counts)
    distinct = {k: int(c.size) for k, c in counts.items()}
    total_distinct = sum(distinct.values())
    weights = {
        k: distinct[k] / total_distinct if total_distinct else 1 / len(keys)
        for k in keys
    }
    top = max((int(c.max()) for c in counts.values() if c.size), default=0)
    t_cap = min(max(min_filter_freq, top + 1), 2**31 - 1)  # no id reaches it
    build = functools.partial(
        _columns,
        kind,
        keys,
        dimension=dimension,
        dtype=dtype,
        stack_key=stack_key,
        migration=migration,
        initializer=initializer,
        evict_option=evict_option,
    )
    ones = dict.fromkeys(keys, 1)
    admission = kind in ("adaptive", "filtered")
    # The sketch: for every distinct id, or as many as its share holds.
    full_ids = [total_distinct] if stack_key is not None else list(distinct.values())
    scale, reserve = 1.0, 0
    if admission:
        scale, reserve = _sketch_scale(full_ids, t_cap, budget.get("training"))
    sketch_ids = _sketch_ids(full_ids, scale)
    base = build(ones, ones, t_cap, sketch_ids)
    shapes = _shapes(base, optimizer)
    sketch_now = sum(_tree_bytes(s.sketch) for s in shapes.values())
    tables = len(base) if kind != "static" else 0
    fixed = {
        "training": _tree_bytes(shapes) - sketch_now + reserve + tables * _INDEX_BUCKET,
        "export": _export_bytes(shapes, base),
    }
    first = keys[0]
    row = bucket = {"training": 0.0, "export": 0.0}
    if kind != "static":
        more = dict(ones, **{first: 1 + _PROBE})
        probe = build(ones, more, t_cap, sketch_ids)
        row = _slopes(probe, optimizer, shapes, base)
    if kind in ("adaptive", "static"):
        more = dict(ones, **{first: 1 + _PROBE})
        probe = build(more, ones, t_cap, sketch_ids)
        bucket = _slopes(probe, optimizer, shapes, base)
    room = {}
    for name, limit in budget.items():
        room[name] = limit - fixed[name]
        if room[name] < 0:
            least = _least(fixed[name], reserve, full_ids, t_cap, name)
            raise ValueError(
                f"size_columns: budget['{name}'] = {limit:,} bytes is below the "
                f"least state of these {kind} columns, {least:,} bytes (one bucket "
                "and one row per feature, the admission sketch, the statistics, "
                f"the default values); give at least {least:,}"
            )
    need = functools.partial(_need, counts, headroom)
    row_share = {"adaptive": ROW_SHARE, "filtered": 1.0, "dynamic": 1.0}.get(kind, 0)
    rows_cap = sum(need(min_filter_freq).values()) - len(keys)
    extra_rows = (
        min((math.floor(row_share * room[n] / row[n]) for n in budget), default=0)
        if kind != "static"
        else 0
    )
    extra_buckets = 0
    if kind in ("adaptive", "static"):
        extra_buckets = min(
            math.floor(
                max((1 - row_share) * room[n], room[n] - row[n] * rows_cap) / bucket[n]
            )
            for n in budget
        )
    threshold = None
    capacity = buckets = dict.fromkeys(keys)
    if admission:
        threshold = _threshold(need, len(keys), extra_rows, min_filter_freq, t_cap)
        capacity = need(threshold)
    elif kind == "dynamic":
        capacity = {
            k: min(max(1, distinct[k]), 1 + math.floor(extra_rows * weights[k]))
            for k in keys
        }
    if kind in ("adaptive", "static"):
        buckets = {k: 1 + math.floor(extra_buckets * weights[k]) for k in keys}
        if kind == "adaptive":
            buckets = {k: min(buckets[k], max(1, distinct[k])) for k in keys}
        buckets = {k: min(b, 2**31 - 1) for k, b in buckets.items()}
    columns = build(buckets, capacity, threshold, sketch_ids)
    measured = _shapes(columns, optimizer)
    sizes = {
        k: ColumnSize(
            k,
            distinct[k],
            buckets[k],
            capacity[k],
            threshold,
            _column_reason(
                kind,
                k,
                counts[k],
                buckets[k],
                capacity[k],
                threshold,
                headroom,
                weights[k],
            ),  # fmt: skip
        )
        for k in keys
    }
    training, export = _tree_bytes(measured), _export_bytes(measured, columns)
    reason = _reason(
        kind, budget, training, export, threshold, min_filter_freq, sketch_ids,
        full_ids, optimizer,
    )  # fmt: skip
    return Sizing(sizes, columns, training, export, budget, reason)


def _checked_frequencies(frequencies: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(frequencies, Mapping) or not frequencies:
        raise ValueError(
            "size_columns: frequencies must be a non-empty dict of feature key -> "
            f"counts of its distinct ids, got {type(frequencies).__name__}"
        )
    counts = {}
    for key, values in frequencies.items():
        array = np.asarray(values)
        if not isinstance(key, str) or array.ndim != 1:
            raise ValueError(
                f"size_columns: frequencies[{key!r}] must be a 1-D array of counts "
                f"under a str key, got shape {array.shape}"
            )
        if array.size and (
            not np.issubdtype(array.dtype, np.integer) or int(array.min()) < 1
        ):
            raise ValueError(
                f"size_columns: frequencies['{key}'] must hold int counts >= 1 (how "
                "often each distinct id occurred), got "
                f"{array.dtype} values down to {array.min()!r}"
            )
        counts[key] = np.sort(array.astype(np.int64))
    return counts


def _checked_budget(budget: int | Mapping[str, int]) -> dict[str, int]:
    given = dict(budget) if isinstance(budget, Mapping) else {"training": budget}
    if not given:
        raise ValueError(
            f"size_columns: budget must be an int or a dict of {BUDGETS}, got {{}}"
        )
    for name, value in given.items():
        if name not in BUDGETS:
            raise ValueError(
                f"size_columns: budget[{name!r}]: an unknown budget kind; give "
                f"bytes for one of {BUDGETS}"
            )
        value = _numerics.python_int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"size_columns: budget['{name}'] must be an int of bytes >= 1, got "
                f"{value!r}"
            )
        given[name] = value
    return given


def _check_options(kind, dimension, min_filter_freq, headroom, stack_key) -> None:
    if kind not in KINDS:
        raise ValueError(f"size_columns: kind must be one of {KINDS}, got {kind!r}")
    for name, value in (("dimension", dimension), ("min_filter_freq", min_filter_freq)):
        value = _numerics.python_int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"size_columns: {name} must be an int >= 1, got {value!r}")
    if not (isinstance(headroom, int | float) and headroom >= 1.0):
        raise ValueError(f"size_columns: headroom must be >= 1, got {headroom!r}")
    if stack_key is not None and not isinstance(stack_key, str):
        raise ValueError(f"size_columns: stack_key must be a str, got {stack_key!r}")


def _need(counts: dict[str, np.ndarray], headroom: float, t: int) -> dict[str, int]:
    """Rows per feature for its ids seen at least `t` times, with headroom."""
    return {
        k: min(
            table_lib.MAX_CAPACITY,
            max(1, math.ceil((c.size - int(np.searchsorted(c, t))) * headroom)),
        )
        for k, c in counts.items()
    }


def _threshold(need, features: int, extra: int, lowest: int, highest: int) -> int:
    """The lowest threshold in `[lowest, highest]` whose rows fit `extra` more
    rows than one per feature (`highest`, which no id reaches, always does)."""
    while lowest < highest:
        middle = (lowest + highest) // 2
        if sum(need(middle).values()) - features <= extra:
            highest = middle
        else:
            lowest = middle + 1
    return lowest


def _sketch_bytes(ids: list[int], t: int) -> int:
    return sum(options.CounterFilter(t, max_element_size=n).sketch_bytes() for n in ids)


def _sketch_ids(full: list[int], scale: float) -> list[int]:
    return [max(1, math.floor(n * scale)) for n in full]


def _sketch_scale(full: list[int], t: int, budget: int | None) -> tuple[float, int]:
    """The share of the distinct ids the sketch is sized for, and the bytes
    kept for it: all of them if they fit `SKETCH_SHARE` of the training budget;
    else the most that do (the bytes kept: that share, whatever it holds)."""
    whole = _sketch_bytes([max(1, n) for n in full], t)
    least = _sketch_bytes(_sketch_ids(full, 0.0), t)
    if budget is None or whole <= SKETCH_SHARE * budget:
        return 1.0, whole
    reserve = max(least, math.floor(SKETCH_SHARE * budget))
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if _sketch_bytes(_sketch_ids(full, middle), t) <= reserve:
            low = middle
        else:
            high = middle
    return low, reserve


def _least(fixed: int, reserve: int, full: list[int], t: int, name: str) -> int:
    """The least budget of `name`: the fixed state, with the sketch at the
    size that budget would give it."""
    if name != "training" or not reserve:
        return fixed
    other = fixed - reserve
    whole = _sketch_bytes([max(1, n) for n in full], t)
    least = _sketch_bytes(_sketch_ids(full, 0.0), t)

    def kept(budget: int) -> int:  # as `_sketch_scale` keeps
        if whole <= SKETCH_SHARE * budget:
            return whole
        return max(least, math.floor(SKETCH_SHARE * budget))

    edge = math.ceil(other / (1 - SKETCH_SHARE))
    candidates = (other + least, other + whole, edge, edge + 1)
    return min(c for c in candidates if c >= other + kept(c))


def _columns(
    kind: str,
    keys: list[str],
    buckets: dict[str, int | None],
    capacity: dict[str, int | None],
    threshold: int | None,
    sketch_ids: list[int],
    *,
    dimension: int,
    dtype: str,
    stack_key: str | None,
    migration: str,
    initializer: Callable | None,
    evict_option: Any,
) -> tuple[_specs.EmbeddingColumn, ...]:
    """The embedding columns of these sizes."""

    def option(k: str, ids: int) -> options.EmbeddingVariableOption:
        admission = None
        if kind in ("adaptive", "filtered"):
            admission = options.CounterFilter(threshold, max_element_size=ids)
        return options.EmbeddingVariableOption(
            capacity=capacity[k], filter_option=admission, evict_option=evict_option
        )

    def member(k: str, ids: int) -> _specs.CategoricalColumn:
        if kind == "static":
            return _specs.categorical_column_with_hash_bucket(k, buckets[k], dtype)
        if kind == "adaptive":
            return _specs.categorical_column_with_adaptive_embedding(
                k, buckets[k], dtype, ev_option=option(k, ids), migration=migration
            )
        return _specs.categorical_column_with_embedding(
            k, dtype, ev_option=option(k, ids)
        )

    if stack_key is not None:
        stacked = _specs.stacked_column(
            [member(k, sketch_ids[0]) for k in keys], stack_key
        )
        categorical = [stacked]
    else:
        categorical = [member(k, n) for k, n in zip(keys, sketch_ids, strict=True)]
    return tuple(
        _specs.embedding_column(c, dimension, initializer=initializer)
        for c in categorical
    )


@functools.lru_cache(maxsize=64)
def _shapes(columns: tuple[_specs.EmbeddingColumn, ...], optimizer: Any) -> dict:
    return jax.eval_shape(
        functools.partial(_layer.init_state, columns, optimizer), jax.random.key(0)
    )


def _tree_bytes(tree: Any) -> int:
    return sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def _export_bytes(shapes: dict, columns: Sequence[_specs.EmbeddingColumn]) -> int:
    """What `export.export` copies out of a state of these shapes, every row
    live and none zero."""
    total = 0
    for column in columns:
        state = shapes[column.name]
        if state.static is not None:
            total += _tree_bytes(state.static.values)
        if state.dynamic is not None:
            table = state.dynamic.table
            rows = (table.row_keys, state.dynamic.values, table.freq, table.last_step)
            total += _tree_bytes(rows)
        option = column.categorical_column.ev_option
        if state.static is None and option is not None and option.filter_option is None:
            total += _tree_bytes(state.default_values)
    return total


def _slopes(probe, optimizer, shapes, base) -> dict[str, float]:
    """Bytes per row or bucket: what `_PROBE` more of them add, in training and
    in the export."""
    more = _shapes(probe, optimizer)
    return {
        "training": (_tree_bytes(more) - _tree_bytes(shapes)) / _PROBE,
        "export": (_export_bytes(more, probe) - _export_bytes(shapes, base)) / _PROBE,
    }


def _column_reason(
    kind: str,
    key: str,
    counts: np.ndarray,
    buckets: int | None,
    capacity: int | None,
    threshold: int | None,
    headroom: float,
    weight: float,
) -> str:
    """One sentence: what the feature got and why."""
    distinct = counts.size
    parts = []
    if threshold is not None:
        reach = distinct - int(np.searchsorted(counts, threshold))
        parts.append(
            f"{capacity:,} rows for its {reach:,} ids seen >= {threshold} times "
            f"(x{headroom:g} headroom)"
        )
    elif capacity is not None:
        every = "a row per id" if capacity >= distinct else "its share of the rows"
        parts.append(f"{capacity:,} rows for its {distinct:,} ids ({every})")
    if buckets is not None:
        rest = "its other ids" if kind == "adaptive" else f"its {distinct:,} ids"
        why = f"{weight:.1%} of the buckets, its share of the distinct ids"
        if kind == "adaptive" and buckets >= max(1, distinct):
            why = "one per distinct id: more would not help"
        parts.append(f"{buckets:,} buckets for {rest} ({why})")
    if kind == "filtered":
        parts.append("its other ids read 0")
    return f"{key}: " + "; ".join(parts)


def _reason(
    kind: str,
    budget: dict[str, int],
    training: int,
    export: int,
    threshold: int | None,
    lowest: int,
    sketch_ids: list[int],
    full_ids: list[int],
    optimizer: Any,
) -> str:
    """A few sentences: the bytes against the budget, and the rule's choices."""
    spec = optim.spec_of(optimizer)
    slots = len(jax.tree.leaves(spec.init_slots(np.zeros((1, 1), np.float32))))
    given = ", ".join(f"{name} {limit:,} B" for name, limit in budget.items())
    lines = [
        f"{kind} columns in a budget of {given}: training state {training:,} B, "
        f"export at most {export:,} B; {type(spec).__name__} keeps {slots} slot "
        "array(s) beside each table's values."
    ]
    if threshold is not None:
        fitted = (
            "the lowest allowed"
            if threshold == lowest
            else f"the lowest at or above {lowest} at which the ids reaching it fit "
            f"the rows' share ({ROW_SHARE:.0%} with buckets) of the bytes"
        )
        lines.append(f"filter_freq {threshold}: {fitted}.")
        if sum(sketch_ids) < sum(full_ids):
            lines.append(
                f"The admission sketch is sized for {sum(sketch_ids):,} of the "
                f"{sum(full_ids):,} distinct ids, what {SKETCH_SHARE:.0%} of the "
                "training budget holds: its counts are recent ones."
            )
    return " ".join(lines)
