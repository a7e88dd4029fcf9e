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

The rule, for an adaptive column (rows for the frequent ids, one bucket per
feature for the rest):

1. The least state (one bucket and one row per feature, the statistics,
   `DEFAULT_VALUES` rows of default values, one index bucket per table of
   slack) is paid first; a budget below it is an error that says how much is
   needed.
2. The admission sketch counts the ids without a row. It is sized for every
   distinct id of the pass if that takes at most `SKETCH_SHARE` of the
   training budget; else for as many as that share holds (it then halves its
   counters more often: a count is a more recent count). Its counters are as
   narrow as the threshold allows (uint8 up to 255).
3. The rows get the bytes left: the threshold is the lowest (at least
   `min_filter_freq`) at which the ids reaching it, times `headroom`, fit
   them; each feature gets rows for its ids that reach it, and the rows left
   over go toward the ids of the next lower threshold (so they are there when
   a larger budget lowers it). An id reaches a threshold when the sketch's
   count of it does, not the pass's: a sketch smaller than the pass forgets
   as it counts (`_sketch_counts` simulates it), and a threshold read off the
   pass would leave most rows empty.
4. The buckets stay at one per feature, whatever the budget: a feature's one
   bucket learns what its rare ids share, and more buckets split that into
   noisier parts (docs/claim.md: 1/16 or 1/64 of the rare ids as buckets
   scored 0.004 to 0.010 AUC below one bucket per column). Bytes past every
   row of the lowest threshold are left unspent.

Every share is rounded down, so a larger budget never gives a smaller table
while the sketch holds every id (the counts are then the pass's): each
column's capacity and buckets grow or stay, and its threshold falls or stays.
With a forgetting sketch the counts come from a simulation whose sketch grows
with the budget, so there this is measured, not built in: over sweeps of
budgets 6-8% apart (the Criteo slice's counts; a Zipf stream in
tests/test_sketch_counts.py) the threshold fell or stayed and the rows in all
grew, while a feature's own rows now and then fell by one (the Criteo slice's
C23, 9 rows to 8 at a budget 8% larger, its larger sketch counting 6 of its
ids to the threshold where the smaller counted 7). A "filtered" column (no
buckets) sizes its rows as an adaptive one; a "dynamic" one (no filter) has a
row per id as far as the budget goes, shared by distinct ids; a "static" one
spends it all on buckets, shared by distinct ids.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from adaptive_jax import table as table_lib
from adaptive_jax.column import options
from adaptive_jax.feature_column import (
    _footprint,
    _sizing_edges,
    _sketch_counts,
    _specs,
)

KINDS, BUDGETS = _sizing_edges.KINDS, _sizing_edges.BUDGETS
# A sized table's rows of default values (a new row starts from one, by its
# key): DeepRec's 4,096 take 131 kB at dimension 8, more than 1/64 of a row
# per id on the Criteo slice; 64 draws of the initializer start rows as well.
DEFAULT_VALUES = 64


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
      migration, initializer, evict_option: as the columns take them (the
        columns are not partitioned; eviction changes no byte).

    Returns:
      A `Sizing`: the sizes and reasons per feature, the columns, their bytes.

    Example: a long-tailed feature and a short one, in 200 kB of training
    state; the rows hold the ids the admission sketch counts to 3:
      >>> import numpy as np
      >>> from adaptive_jax import feature_column as fc, optim
      >>> rng = np.random.default_rng(0)
      >>> ids = {"site": rng.zipf(1.3, 50_000), "device": rng.integers(0, 40, 50_000)}
      >>> counts = {k: np.unique(v, return_counts=True)[1] for k, v in ids.items()}
      >>> sized = fc.size_columns(counts, 8, optim.ftrl(0.1), 200_000)
      >>> [(s.hash_bucket_size, s.capacity, s.filter_freq)
      ...  for s in sized.sizes.values()]
      [(1, 800, 3), (1, 50, 3)]
      >>> sized.training_bytes <= 200_000
      True
      >>> print(sized.sizes["site"].reason)  # doctest: +NORMALIZE_WHITESPACE
      site: 800 rows: 799 for its 639 ids the sketch will count to 3 (x1.25
      headroom), 1 toward those it counts to 2; 1 bucket for its other ids
      (what they share)

    Raises:
      ValueError: a bad argument, or a budget below the least state of these
        columns (the message says how much that is); each names the option.
    """
    counts = _sizing_edges.checked_frequencies(frequencies)
    budget = _sizing_edges.checked_budget(budget)
    _sizing_edges.check_options(kind, dimension, min_filter_freq, headroom, stack_key)
    keys = list(counts)
    distinct = {k: int(c.size) for k, c in counts.items()}
    everything = sum(distinct.values())
    # A dynamic table's rows and a static one's buckets: by distinct ids.
    weights = {k: distinct[k] / max(1, everything) for k in keys}
    top = max((int(c.max()) for c in counts.values() if c.size), default=0)
    never = min(max(min_filter_freq, top + 1), 2**31 - 1)  # no id reaches it
    admission = kind in ("adaptive", "filtered")
    full = ([everything] if stack_key else list(distinct.values())) if admission else []
    build = functools.partial(
        _columns, kind, keys, dimension=dimension, dtype=dtype,
        stack_key=stack_key, migration=migration, initializer=initializer,
        evict_option=evict_option,
    )  # fmt: skip
    smallest = _footprint.sketch_ids(full, 0.0)
    cost = _footprint.costs(
        lambda buckets, rows: build(buckets, rows, never, sketch_ids=smallest),
        optimizer, keys, kind,
    )  # fmt: skip
    plan = functools.partial(
        _plan, kind, budget, cost, counts, headroom, stack_key is not None, full,
        min_filter_freq, never, weights,
    )  # fmt: skip
    # The sketch's counters are as narrow as the threshold allows: try the
    # narrowest first, wider only if the threshold it gives needs them.
    for counting in _widths(min_filter_freq, never):
        chosen = plan(counting)
        if chosen.threshold is None or chosen.threshold <= counting:
            break
    columns = build(
        chosen.buckets, chosen.capacity, chosen.threshold, sketch_ids=chosen.sketched
    )
    state = _footprint.shapes(columns, optimizer)
    training = _footprint.tree_bytes(state)
    exported = _footprint.export_bytes(state, columns)
    why = functools.partial(_sizing_edges.column_reason, kind, chosen=chosen)
    sizes = {
        k: ColumnSize(
            k, distinct[k], chosen.buckets[k], chosen.capacity[k], chosen.threshold,
            why(k, chosen.peaks[k], headroom=headroom, weight=weights[k]),
        )
        for k in keys
    }  # fmt: skip
    reason = _sizing_edges.reason(
        kind, budget, training, exported, chosen.threshold, min_filter_freq,
        chosen.sketched, full, optimizer,
    )  # fmt: skip
    return Sizing(sizes, columns, training, exported, budget, reason)


class _Chosen(NamedTuple):
    """Sizes by feature (None where the kind has no such table)."""

    threshold: int | None
    capacity: dict[str, int | None]
    buckets: dict[str, int | None]
    needed: dict[str, int]  # rows for the ids reaching the threshold
    sketched: list[int]  # the distinct ids each sketch is sized for
    peaks: dict[str, np.ndarray]  # sorted, the counts the sketch will reach


def _widths(lowest: int, never: int) -> list[int]:
    """The largest threshold of each counter width, from the narrowest that
    holds `lowest` to the one that holds `never`."""
    widths = []
    for largest in (2**8 - 1, 2**16 - 1, 2**31 - 1):  # uint8, uint16, uint32
        if largest >= lowest:
            widths.append(largest)
        if largest >= never:
            return widths
    return widths


def _plan(
    kind, budget, cost, counts, headroom, stacked, full, lowest, never, weights,
    counting,
) -> _Chosen:  # fmt: skip
    """The rule (the module's docstring), with sketch counters wide enough for
    a threshold of `counting`.

    Raises:
      ValueError: a budget below the least state.
    """
    keys = list(counts)
    distinct = {k: int(c.size) for k, c in counts.items()}
    other = cost.least["training"] - cost.sketch  # without the sketch's counters
    reserve = _footprint.sketch_reserve(full, counting, budget.get("training"))
    least = dict(cost.least, training=other + reserve)
    room = {name: limit - least[name] for name, limit in budget.items()}
    for name, left in room.items():
        if left < 0:
            needed = least[name]
            if name == "training":
                needed = _footprint.least_training_budget(other, full, never)
            raise ValueError(
                f"size_columns: budget['{name}'] = {budget[name]:,} bytes is below "
                f"the least state of these {kind} columns, {needed:,} bytes (a "
                "bucket or a row per feature and table, the admission sketch, the "
                f"statistics, the default values); give at least {needed:,}"
            )
    scale = _footprint.sketch_scale(full, counting, reserve) if full else 1.0
    sketched = _footprint.sketch_ids(full, scale) if full else []
    peaks = _peaks(counts, sketched, stacked)
    need = functools.partial(_need, peaks, headroom)
    extra_rows, extra_buckets = _allowances(kind, room, cost)
    threshold, needed = None, {}
    capacity = buckets = dict.fromkeys(keys)
    if kind in ("adaptive", "filtered"):
        threshold = _threshold(need, len(keys), extra_rows, lowest, never)
        needed = need(threshold)
        capacity = _with_spare_rows(need, threshold, extra_rows, lowest)
    elif kind == "dynamic":
        capacity = {
            k: min(max(1, distinct[k]), 1 + math.floor(extra_rows * weights[k]))
            for k in keys
        }
    if kind == "adaptive":
        buckets = dict.fromkeys(keys, 1)
    elif kind == "static":
        buckets = {
            k: min(2**31 - 2, 1 + math.floor(extra_buckets * weights[k])) for k in keys
        }
    return _Chosen(threshold, capacity, buckets, needed, sketched, peaks)


def _peaks(
    counts: dict[str, np.ndarray], sketched: list[int], stacked: bool
) -> dict[str, np.ndarray]:
    """Per feature, the counts its ids will reach in the admission sketch
    sized for `sketched` ids (one sketch for all features when `stacked`, else
    one each; the pass's counts without a sketch): `_sketch_counts`."""
    if not sketched:
        return counts
    keys = list(counts)
    groups = [keys] if stacked else [[k] for k in keys]
    peaks = {}
    for group, ids in zip(groups, sketched, strict=True):
        sketch = options.CounterFilter(1, max_element_size=ids)
        halve_at = sketch.halve_at(sketch.sketch_shape(0)[1])
        reached = _sketch_counts.peak_counts([counts[k] for k in group], halve_at)
        peaks.update(zip(group, reached, strict=True))
    return peaks


def _allowances(
    kind: str, room: dict[str, int], cost: _footprint.Costs
) -> tuple[int, int]:
    """Rows and buckets past one per feature that every budget allows: all
    the room to rows, or to buckets in a static column."""
    if kind == "static":
        return 0, min(math.floor(room[n] / cost.bucket[n]) for n in room)
    return min(math.floor(room[n] / cost.row[n]) for n in room), 0


def _need(counts: dict[str, np.ndarray], headroom: float, t: int) -> dict[str, int]:
    """Rows per feature for its ids counted at least `t` times (sorted
    `counts`), with headroom."""
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


def _with_spare_rows(need, threshold: int, extra: int, lowest: int) -> dict[str, int]:
    """Rows per feature for its ids reaching `threshold`, and the rows the
    budget allows past them, toward the ids of the next lower threshold, in
    proportion to what each feature will need there: as the budget grows, each
    feature's rows grow to those of the next threshold, and never shrink."""
    rows = need(threshold)
    if threshold <= lowest:
        return rows  # past the lowest threshold's rows, more would stay empty
    below = need(threshold - 1)
    spare = extra - (sum(rows.values()) - len(rows))
    step = sum(below.values()) - sum(rows.values())
    return {k: rows[k] + spare * (below[k] - rows[k]) // step for k in rows}


def _columns(
    kind: str,
    keys: list[str],
    buckets: dict[str, int | None],
    capacity: dict[str, int | None],
    threshold: int | None,
    *,
    sketch_ids: list[int],
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
            capacity=capacity[k],
            filter_option=admission,
            evict_option=evict_option,
            init_option=options.InitializerOption(default_value_dim=DEFAULT_VALUES),
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

    ids = sketch_ids or [1] * len(keys)  # none without admission
    if stack_key is not None:
        categorical = [
            _specs.stacked_column([member(k, ids[0]) for k in keys], stack_key)
        ]
    else:
        categorical = [member(k, n) for k, n in zip(keys, ids, strict=True)]
    return tuple(
        _specs.embedding_column(c, dimension, initializer=initializer)
        for c in categorical
    )
