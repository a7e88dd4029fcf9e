"""What a forgetting admission sketch will count: each id's highest count in
one pass, simulated from the pass's counts, for `size_columns`' threshold.

A survey of the pass says how often each id occurred; the admission sketch
(`table._sketch`) does not see the pass at once. Sized for fewer distinct ids
than the pass holds, it halves every counter whenever the distinct ids it
holds reach that size, so an id seen 28 times over the pass may never hold 28
at once. A threshold read off the pass's counts then admits far fewer ids than
the rows were sized for: on the Criteo slice (51,671 distinct ids, a sketch
for 8,414 of them, threshold 28) 791 ids reach 28 in the pass, 180 were
admitted in training.

So the sizing reads each id's peak in a simulation of that sketch instead: the
pass's occurrences in a random order (fixed seed), counted exactly (collisions
only raise a count-min estimate, and the headroom covers them), in `CHUNKS`
chunks standing for the batches; after each chunk whose ids bring the held
distinct ids to `halve_at`, every count is halved, rounding down, as the
sketch does after a batch (at most once a batch). Counts keep growing past
the threshold (admitted ids are not frozen), which holds a few more ids than
the sketch does and halves a little sooner: the peaks come out slightly low
(the Criteo slice above: 147 ids reach 28, against 180 admitted), which errs
toward rows that fill. With a sketch for every distinct id no count is halved
before the pass ends, and the peaks are the pass's counts. Past `MAX_EVENTS`
occurrences the simulation runs on a random share of the ids (and of
`halve_at`), each sampled peak standing for its share of its feature's ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_EVENTS = 1 << 24  # occurrences simulated at most; past it, a sample of ids
CHUNKS = 1024  # a pass's chunks, standing for its batches
_SEED = 0x51CE


def peak_counts(counts: Sequence[np.ndarray], halve_at: float) -> list[np.ndarray]:
    """Per feature, the sorted highest counts its ids reach in one sketch that
    counts all the features' ids and halves at `halve_at` distinct ids.

    Args:
      counts: per feature, how often each of its distinct ids occurred.
      halve_at: the distinct ids held at which the sketch halves its counters
        (`AdmissionFilter.halve_at`).

    Returns:
      Per feature, as many peaks as it has distinct ids, sorted.
    """
    sizes = [int(c.size) for c in counts]
    if sum(sizes) <= halve_at:  # it never forgets within the pass
        return [np.sort(c) for c in counts]
    rng = np.random.default_rng(_SEED)
    everything = np.concatenate(list(counts)).astype(np.int64)
    share = min(1.0, MAX_EVENTS / max(1, int(everything.sum())))
    kept = np.flatnonzero(rng.random(everything.size) < share)
    peaks = _simulate(everything[kept], halve_at * share, rng)
    owner = np.repeat(np.arange(len(sizes)), sizes)[kept]
    return [
        _spread(np.sort(peaks[owner == f]), size)
        if np.any(owner == f)
        # no id of it in the sample: the pass's counts, the most it can reach
        else np.sort(c)
        for f, (c, size) in enumerate(zip(counts, sizes, strict=True))
    ]


def _simulate(counts: np.ndarray, halve_at: float, rng) -> np.ndarray:
    """Each id's highest count: its `counts[i]` occurrences shuffled among the
    others', counted in chunks, every count halved after a chunk that brings
    the ids held (a count of 1 or more) to `halve_at`."""
    stream = rng.permutation(np.repeat(np.arange(counts.size), counts))
    size = math.ceil(stream.size / CHUNKS)
    count = np.zeros(counts.size, np.int64)
    peak = np.zeros(counts.size, np.int64)
    held = 0
    for start in range(0, stream.size, size):
        ids, seen = np.unique(stream[start : start + size], return_counts=True)
        before = count[ids]
        held += int(np.count_nonzero(before == 0))
        count[ids] = before + seen
        peak[ids] = np.maximum(peak[ids], before + seen)
        if held >= halve_at:
            count //= 2
            held = int(np.count_nonzero(count))
    return peak


def _spread(sampled: np.ndarray, size: int) -> np.ndarray:
    """`size` peaks from a sorted sample of them: each sampled peak repeated
    in proportion (every peak once when nothing was left out)."""
    if sampled.size == size:
        return sampled
    quantiles = (np.arange(size) + 0.5) / size
    return sampled[(quantiles * sampled.size).astype(np.int64)]
