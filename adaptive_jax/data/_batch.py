"""A batch of Criteo examples as numpy arrays, and the column names of the format.

One example per line: a 0/1 label, 13 integer features `I1..I13` and 26
categorical features `C1..C26`. A batch holds them column by column, in the
forms the model takes: the labels and integers as float32, each categorical
column as a dense padded `[n, 1]` string array where "" marks a missing value,
the form `feature_column.prepare` accepts for a string column.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INTEGER_COLUMNS = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL_COLUMNS = tuple(f"C{i}" for i in range(1, 27))
NUM_FIELDS = 1 + len(INTEGER_COLUMNS) + len(CATEGORICAL_COLUMNS)


@dataclasses.dataclass(frozen=True)
class Batch:
    """Examples of the Criteo format, column by column.

    Attributes:
      labels: `[n] float32`, 0 or 1.
      dense: `[n, 13] float32`, the integer features `I1..I13`; 0 where missing.
      dense_missing: `[n, 13] bool`, True where an integer feature is missing.
      categorical: `C1..C26` -> `[n, 1] str`, "" where the value is missing.
    """

    labels: np.ndarray
    dense: np.ndarray
    dense_missing: np.ndarray
    categorical: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        """The number of examples."""
        return self.labels.shape[0]


def take(batch: Batch, start: int, stop: int) -> Batch:
    """Examples `start` to `stop` (excluded) of `batch`, as views."""
    return Batch(
        labels=batch.labels[start:stop],
        dense=batch.dense[start:stop],
        dense_missing=batch.dense_missing[start:stop],
        categorical={k: v[start:stop] for k, v in batch.categorical.items()},
    )


def concatenate(batches: list[Batch]) -> Batch:
    """The examples of `batches`, one after the other, in one batch."""
    if len(batches) == 1:
        return batches[0]
    return Batch(
        labels=np.concatenate([b.labels for b in batches]),
        dense=np.concatenate([b.dense for b in batches]),
        dense_missing=np.concatenate([b.dense_missing for b in batches]),
        categorical={
            k: np.concatenate([b.categorical[k] for b in batches])
            for k in CATEGORICAL_COLUMNS
        },
    )


def pad(batch: Batch, size: int) -> Batch:
    """`batch` followed by empty examples up to `size`: label 0, every integer
    missing (0), every categorical value missing (""). A step over a batch of
    fixed shape can then train on a short last batch, its padding weighted 0.

    Raises:
      ValueError: `size` is below the batch's size.
    """
    missing = size - batch.size
    if missing < 0:
        raise ValueError(f"pad: the batch has {batch.size} examples, more than {size}")
    if missing == 0:
        return batch
    width = len(INTEGER_COLUMNS)
    empty = Batch(
        labels=np.zeros(missing, batch.labels.dtype),
        dense=np.zeros((missing, width), batch.dense.dtype),
        dense_missing=np.ones((missing, width), bool),
        categorical={
            k: np.full((missing, 1), "", batch.categorical[k].dtype)
            for k in CATEGORICAL_COLUMNS
        },
    )
    return concatenate([batch, empty])
