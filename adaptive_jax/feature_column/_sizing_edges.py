"""What `size_columns` reads and says: its arguments, checked before any
work, each error naming the option; and its reasons, one sentence per feature
and a few for the whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from adaptive_jax import _numerics, optim
from adaptive_jax.feature_column._footprint import SKETCH_SHARE

KINDS = ("adaptive", "filtered", "dynamic", "static")
BUDGETS = ("training", "export")


def checked_frequencies(frequencies: Mapping[str, Any]) -> dict[str, np.ndarray]:
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


def checked_budget(budget: int | Mapping[str, int]) -> dict[str, int]:
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


def check_options(kind, dimension, min_filter_freq, headroom, stack_key) -> None:
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


def column_reason(
    kind: str, key: str, counts: np.ndarray, chosen: Any, headroom: float,
    weight: float,
) -> str:  # fmt: skip
    """One sentence: what the feature got and why (`counts`: sorted, what its
    ids will count to in the admission sketch; `weight`: its share of a static
    column's buckets or a dynamic one's rows, by distinct ids)."""
    distinct = counts.size
    threshold, needed = chosen.threshold, chosen.needed.get(key)
    buckets, capacity = chosen.buckets[key], chosen.capacity[key]
    parts = []
    if threshold is not None:
        reach = distinct - int(np.searchsorted(counts, threshold))
        line = (
            f"{_count(capacity, 'row')}: {needed:,} for its {reach:,} ids the "
            f"sketch will count to {threshold} (x{headroom:g} headroom)"
        )
        if capacity > needed:
            line += f", {capacity - needed:,} toward those it counts to {threshold - 1}"
        parts.append(line)
    elif capacity is not None:
        every = "a row per id" if capacity >= distinct else "its share of the rows"
        parts.append(f"{_count(capacity, 'row')} for its {distinct:,} ids ({every})")
    if kind == "adaptive":
        parts.append("1 bucket for its other ids (what they share)")
    elif buckets is not None:
        parts.append(
            f"{_count(buckets, 'bucket')} for its {distinct:,} ids ({weight:.1%} of "
            "the buckets, its share of the distinct ids)"
        )
    if kind == "filtered":
        parts.append("its other ids read 0")
    return f"{key}: " + "; ".join(parts)


def reason(
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
            "the rows the bytes buy"
        )
        lines.append(f"filter_freq {threshold}: {fitted}.")
        if kind == "adaptive":
            lines.append(
                "One bucket per feature: it learns what the feature's rare ids "
                "share; more would split that into noisier parts."
            )
        if sum(sketch_ids) < sum(full_ids):
            lines.append(
                f"The admission sketch is sized for {sum(sketch_ids):,} of the "
                f"{sum(full_ids):,} distinct ids, what {SKETCH_SHARE:.0%} of the "
                "training budget holds: it halves its counts as it fills, so the "
                "threshold is read off the counts it will reach (a simulation of "
                "the pass), not the pass's."
            )
    return " ".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
