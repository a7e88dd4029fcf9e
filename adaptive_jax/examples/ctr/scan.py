"""What one pass over a split tells before training: ids, their counts, and the
data's defects.

`scan` counts each column's distinct ids, how often each occurs and the example
at which each is first seen (so that the test split's ids can be called late:
first seen near the end of training, or never), and a digest of every example
(so that repeated examples, and examples shared by the training and the test
split, are counted). `problems` turns what a scan found into the warnings a
user should read before trusting a score: duplicates, a leak from the training
split into the test split, a column with no values or with one value only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from adaptive_jax import data, hashing
from adaptive_jax.data import _click_model


@dataclasses.dataclass(frozen=True)
class IdCounts:
    """What one pass over a split tells about its ids and examples.

    Attributes:
      examples: examples read.
      positives: examples of label 1.
      distinct: column key -> distinct ids.
      frequency_counts: column key -> `[k] int64`, how often each distinct id
        occurs, in the order of `values`.
      values: column key -> `[k] str`, the distinct ids, sorted.
      first_seen: column key -> `[k] int64`, the example (0-based, in stream
        order) at which each id first occurs.
      digests: `[examples] uint64`, a hash of each example's label and fields.
    """

    examples: int
    positives: int
    distinct: dict[str, int]
    frequency_counts: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    first_seen: dict[str, np.ndarray]
    digests: np.ndarray

    def reaching(self, key: str, threshold: int) -> int:
        """Distinct ids of column `key` that occur at least `threshold` times."""
        return int(np.sum(self.frequency_counts[key] >= threshold))

    def rare(self, key: str, threshold: int) -> int:
        """Distinct ids of column `key` that occur fewer than `threshold` times."""
        return self.distinct[key] - self.reaching(key, threshold)

    @property
    def distinct_total(self) -> int:
        return sum(self.distinct.values())


def digests(batch: data.Batch) -> np.ndarray:
    """`[n] uint64`: a hash of each example (label, integers and their missing
    marks, categorical values), equal for equal examples whatever the batch."""
    parts = [
        batch.labels.astype(np.float64).view(np.uint64)[:, None],
        batch.dense.astype(np.float64).view(np.uint64),
        batch.dense_missing.astype(np.uint64),
    ]
    parts += [
        hashing.fingerprint64(batch.categorical[k][:, 0])[:, None]
        for k in data.CATEGORICAL_COLUMNS
    ]
    words = np.concatenate(parts, axis=1)
    state = np.zeros(batch.size, np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words.shape[1]):
            state = _click_model.mix64(state ^ words[:, column]) + np.uint64(column)
    return state


def scan(batches: Iterable[data.Batch]) -> IdCounts:
    """Counts the examples, the positives and each column's ids, in one pass.

    Memory grows with the distinct ids per batch, summed, until the end of the
    pass, where each column's counts are merged; and with 8 bytes per example.
    """
    examples = positives = 0
    pieces: dict[str, list[tuple[np.ndarray, ...]]] = {
        key: [] for key in data.CATEGORICAL_COLUMNS
    }
    digest_parts = []
    for batch in batches:
        for key, values in batch.categorical.items():
            values = values[:, 0]
            present = np.flatnonzero(values != "")
            unique, first, count = np.unique(
                values[present], return_index=True, return_counts=True
            )
            pieces[key].append((unique, present[first] + examples, count))
        digest_parts.append(digests(batch))
        examples += batch.size
        positives += int(batch.labels.sum())
    distinct, frequency, values, first_seen = {}, {}, {}, {}
    for key, parts in pieces.items():
        values[key], first_seen[key], frequency[key] = _merged(parts)
        distinct[key] = int(values[key].size)
    found = np.concatenate(digest_parts) if digest_parts else np.zeros(0, np.uint64)
    return IdCounts(examples, positives, distinct, frequency, values, first_seen, found)


def _merged(
    parts: list[tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batches' distinct ids merged: sorted values, first example, count."""
    if not parts:
        return np.zeros(0, "U1"), np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = np.concatenate([p[0] for p in parts])
    first = np.concatenate([p[1] for p in parts]).astype(np.int64)
    counts = np.concatenate([p[2] for p in parts]).astype(np.int64)
    unique, inverse = np.unique(values, return_inverse=True)
    earliest = np.full(unique.size, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(earliest, inverse, first)
    return unique, earliest, np.bincount(inverse, weights=counts).astype(np.int64)


def late_ids(
    batches: Iterable[data.Batch], training: IdCounts, late_start: float
) -> np.ndarray:
    """`[examples] uint8`: per example of `batches` (a test split), how many of
    its ids are late: first seen in training at or after `late_start` (a
    fraction of the training examples), or never seen in training.

    These are the ids a model has seen little or nothing of when it is tested
    (cold start), whatever data the split comes from.
    """
    cutoff = late_start * training.examples
    counts = []
    for batch in batches:
        late = np.zeros(batch.size, np.uint8)
        for key in data.CATEGORICAL_COLUMNS:
            values = batch.categorical[key][:, 0]
            known, first = training.values[key], training.first_seen[key]
            early = np.zeros(values.shape, bool)
            if known.size:
                at = np.minimum(np.searchsorted(known, values), known.size - 1)
                early = (known[at] == values) & (first[at] < cutoff)
            late += (values != "") & ~early
        counts.append(late)
    return np.concatenate(counts) if counts else np.zeros(0, np.uint8)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A defect of the data that a score should be read with.

    Attributes:
      what: one sentence, naming the split, the column and the count.
      serious: the scores may be wrong (a leak), not only noisier.
    """

    what: str
    serious: bool = False


def problems(train: IdCounts, test: IdCounts, names: tuple[str, str]) -> list[Problem]:
    """The defects that `train` and `test` (scans of the two splits, whose
    files `names` name) show."""
    found = []
    for counts, name in ((train, names[0]), (test, names[1])):
        repeats = counts.examples - np.unique(counts.digests).size
        if repeats:
            found.append(
                Problem(
                    f"{name}: {repeats:,} of {counts.examples:,} examples repeat an "
                    "earlier one exactly (label and every field)"
                )
            )
        for key in data.CATEGORICAL_COLUMNS:
            if counts.distinct[key] == 0:
                found.append(Problem(f"{name}: column {key} has no value at all"))
            elif counts.distinct[key] == 1 and counts is train:
                only = str(counts.values[key][0])
                found.append(
                    Problem(
                        f"{name}: column {key} has one value only ({only!r}): it "
                        "cannot tell examples apart"
                    )
                )
    shared = int(np.isin(test.digests, train.digests).sum())
    if shared:
        found.append(
            Problem(
                f"{shared:,} of {test.examples:,} test examples also appear in the "
                "training split: the test scores overstate what the model learnt",
                serious=True,
            )
        )
    return found
