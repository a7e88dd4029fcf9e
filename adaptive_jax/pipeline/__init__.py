"""The host side of the input: batches prepared ahead of the step, on other cores.

A training step on an accelerator takes about a millisecond; hashing and
padding its ids on one host core takes longer. So the host prepares the next
batches while the device runs the current one:

- `Prefetcher(batches, prepare, workers=1, depth=2)`: an iterator that runs
  `prepare` on the batches in background threads, a bounded number ahead, in
  order, errors and the end of the data passed on (`_prefetch`);
- `PrepareBatch(feature_columns)`: a Grain transform (`grain.transforms.Map`)
  that runs `feature_column.prepare` in Grain's worker processes (`_grain`;
  needs the `grain` extra: `pip install adaptive_jax[grain]`, imported only
  when asked for).

Layer: imports `feature_column` and the layers above it.
"""

from __future__ import annotations

from typing import Any

from adaptive_jax.pipeline._prefetch import Prefetcher as Prefetcher

__all__ = ("PrepareBatch", "Prefetcher")


def __getattr__(name: str) -> Any:
    """`PrepareBatch` on first use, so that Grain is imported only then."""
    if name == "PrepareBatch":
        from adaptive_jax.pipeline._grain import PrepareBatch

        return PrepareBatch
    raise AttributeError(f"module 'adaptive_jax.pipeline' has no attribute {name!r}")
