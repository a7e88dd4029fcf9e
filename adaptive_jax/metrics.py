"""Evaluation metrics of a click model, on the host, with numpy.

- `auc(labels, scores)`: the area under the ROC curve, exactly, from ranks
  (the Mann-Whitney U statistic); tied scores share their average rank, so a
  tie between a positive and a negative counts 1/2. O(n log n).
- `log_loss(labels, probabilities)`: the mean binary cross-entropy.

Example:

  >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
  0.75
  >>> round(log_loss([1, 0], [0.9, 0.2]), 4)
  0.1643
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The probability that a random positive scores above a random negative.

    Ties count 1/2: the positives' average ranks among all scores give the
    Mann-Whitney U, and AUC = U / (positives * negatives).

    Args:
      labels: `[n]`, 0 or 1 (bool, int or float).
      scores: `[n]`, any real numbers; only their order matters.

    Returns:
      The AUC, in [0, 1].

    Raises:
      ValueError: shapes differ or are not 1-D, a label is not 0 or 1, a score
        is NaN, or only one class is present.
    """
    positive, scores = _binary_labels(labels, scores, "auc")
    if np.isnan(scores).any():
        raise ValueError("auc: scores hold NaN")
    num_positive = int(positive.sum())
    num_negative = positive.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError(
            f"auc: needs both classes, got {num_positive} positives and "
            f"{num_negative} negatives"
        )
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # ranks are 1-based; a group shares its mean
    average_rank = last_rank - (counts - 1) / 2
    rank_sum = average_rank[group][positive].sum()
    u = rank_sum - num_positive * (num_positive + 1) / 2
    return float(u / (num_positive * num_negative))


def log_loss(
    labels: npt.ArrayLike, probabilities: npt.ArrayLike, eps: float = 1e-7
) -> float:
    """The mean of `-(y log p + (1 - y) log(1 - p))`, in float64.

    Args:
      labels: `[n]`, 0 or 1.
      probabilities: `[n]`, the predicted probabilities of label 1; clipped to
        `[eps, 1 - eps]` so that a confident mistake costs a finite loss.
      eps: the clipping margin.

    Raises:
      ValueError: shapes differ, are not 1-D or are empty, or a label is not 0
        or 1.
    """
    positive, probabilities = _binary_labels(labels, probabilities, "log_loss")
    p = np.clip(probabilities, eps, 1 - eps)
    return float(-np.mean(np.where(positive, np.log(p), np.log1p(-p))))


def _binary_labels(
    labels: npt.ArrayLike, values: npt.ArrayLike, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The labels as bool and the values as float64, after checking them."""
    labels, values = np.asarray(labels), np.asarray(values, np.float64)
    if labels.ndim != 1 or labels.shape != values.shape or labels.size == 0:
        raise ValueError(
            f"{name}: labels and values must be non-empty 1-D arrays of one "
            f"length, got shapes {labels.shape} and {values.shape}"
        )
    positive = labels == 1
    bad = ~positive & (labels != 0)
    if bad.any():
        first = labels[bad][0].item()
        raise ValueError(f"{name}: labels must be 0 or 1, got {first!r}")
    return positive, values
