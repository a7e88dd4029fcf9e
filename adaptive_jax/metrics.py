"""Evaluation metrics of a click model, on the host, with numpy.

- `auc(labels, scores)`: the area under the ROC curve, exactly, from ranks
  (the Mann-Whitney U statistic); tied scores share their average rank, so a
  tie between a positive and a negative counts 1/2. O(n log n).
- `log_loss(labels, probabilities)`: the mean binary cross-entropy.
- `bootstrap_aucs(labels, scores, rounds)`: the AUCs of several models on the
  same resamples of the examples, for intervals of their differences (paired,
  so that the examples' own spread cancels out).

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


def bootstrap_aucs(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    rounds: int = 1000,
    *,
    seed: int = 0,
    chunk: int = 64,
) -> np.ndarray:
    """The AUC of each row of `scores` on `rounds` bootstrap resamples of the
    examples, the same resamples for every row.

    A resample draws n examples with replacement; example i drawn `w_i` times
    weighs `w_i`, and the AUC is that of the weighted pairs, ties 1/2:
    `sum_{i pos, j neg} w_i w_j [s_i > s_j] / (W_pos W_neg)`. Each round is
    O(n) after one sort of each row.

    Args:
      labels: `[n]`, 0 or 1, both classes present.
      scores: `[m, n]` (or `[n]`), one model's scores per row; no NaN.
      rounds: resamples.
      seed: of the resampling.
      chunk: rounds computed at once (memory: `chunk * n` floats).

    Returns:
      `[rounds, m] float64`. A round whose resample holds one class only (rare
      unless a class is rare) is NaN.

    Example:
      >>> aucs = bootstrap_aucs([0, 0, 1, 1], [[0.1, 0.4, 0.35, 0.8]], rounds=500)
      >>> aucs.shape, 0.5 < float(np.nanmean(aucs)) < 0.9
      ((500, 1), True)
    """
    positive, _ = _binary_labels(labels, np.zeros(np.shape(labels)), "bootstrap")
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    if scores.shape[1] != positive.size or np.isnan(scores).any():
        raise ValueError(
            f"bootstrap_aucs: scores must be [m, {positive.size}] without NaN, got "
            f"{scores.shape}"
        )
    n = positive.size
    rng = np.random.default_rng(seed)
    out = np.empty((rounds, scores.shape[0]))
    orders = np.argsort(scores, axis=1, kind="stable")
    for start in range(0, rounds, chunk):
        count = min(chunk, rounds - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=count).astype(float)
        w_pos, w_neg = weights * positive, weights * ~positive
        total = w_pos.sum(axis=1) * w_neg.sum(axis=1)
        for row, order in enumerate(orders):
            s = scores[row, order]
            pos, neg = w_pos[:, order], w_neg[:, order]
            # Per tie group of scores: negatives strictly below, and within it.
            first = np.concatenate([[True], s[1:] != s[:-1]])
            group = np.cumsum(first) - 1
            neg_in_group = np.zeros((count, group[-1] + 1))
            np.add.at(neg_in_group.T, group, neg.T)
            below = np.cumsum(neg_in_group, axis=1) - neg_in_group
            wins = below[:, group] + 0.5 * neg_in_group[:, group]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + count, row] = (pos * wins).sum(axis=1) / total
    return out


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
