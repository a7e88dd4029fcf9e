"""What the benchmarks share: Zipf-distributed ids, paired timing, JSON lines.

A benchmark times its target and its baseline alternately, item by item, so
that both see the same machine (these machines are shared and noisy), and
reports medians after warm-up, with their ratio.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def zipf_ranks(rng: np.random.Generator, size: int, num_ranks: int) -> np.ndarray:
    """`size` ranks in `[0, num_ranks)`, Zipf(1.1)-distributed (rank 0 commonest)."""
    ranks = np.empty(0, np.int64)
    while ranks.size < size:
        draw = rng.zipf(1.1, 2 * size) - 1
        ranks = np.concatenate([ranks, draw[draw < num_ranks]])
    return ranks[:size]


def paired_medians(
    first: Callable[[Any], Any],
    second: Callable[[Any], Any],
    items: Sequence[Any],
    warmup: int,
) -> tuple[float, float]:
    """Median wall times (ms) of `first(item)` and `second(item)`, alternated on
    each item, after `warmup` items, each until its result is ready."""
    times = []
    for item in items:
        pair = []
        for fn in (first, second):
            start = time.perf_counter()
            jax.block_until_ready(fn(item))
            pair.append(time.perf_counter() - start)
        times.append(pair)
    a, b = np.median(np.asarray(times[warmup:]), axis=0) * 1e3
    return float(a), float(b)


def report(name: str, ms: float, baseline_ms: float | None = None, **extra) -> None:
    """Prints one JSON line: the median, and with a baseline its ratio."""
    line = {"name": name, "median_ms": round(ms, 4)}
    if baseline_ms is not None:
        line |= {
            "baseline_ms": round(baseline_ms, 4),
            "ratio": round(ms / baseline_ms, 3),
        }
    print(json.dumps(line | extra), flush=True)
