"""AUC and log loss against references written from their definitions."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive_jax import metrics


def pairwise_auc(labels, scores) -> float:
    """The fraction of (positive, negative) pairs ordered right; ties count 1/2."""
    positives = [s for y, s in zip(labels, scores, strict=True) if y == 1]
    negatives = [s for y, s in zip(labels, scores, strict=True) if y == 0]
    wins = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives
    )
    return wins / (len(positives) * len(negatives))


@st.composite
def labelled_scores(draw):
    """Both classes present; scores from a few values, so that ties are common."""
    labels = [0, 1] + draw(st.lists(st.integers(0, 1), max_size=38))
    values = st.sampled_from([-1.5, 0.0, 0.25, 0.25 + 1e-12, 3.0]) | st.floats(
        -1e6, 1e6
    )
    scores = draw(st.lists(values, min_size=len(labels), max_size=len(labels)))
    return labels, scores


@given(labelled_scores())
def test_auc_matches_the_pairwise_count(case):
    labels, scores = case
    assert metrics.auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores))


def test_auc_known_values():
    assert metrics.auc([0, 1], [0.2, 0.9]) == 1.0
    assert metrics.auc([0, 1], [0.9, 0.2]) == 0.0
    assert metrics.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert metrics.auc(np.array([0.0, 1.0, 1.0]), [1, 2, 0]) == 0.5


def test_auc_takes_only_the_order_of_the_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    scores = rng.normal(size=1000) + labels
    assert metrics.auc(labels, scores) == metrics.auc(labels, np.exp(3 * scores))


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0]], ids=["positives", "negatives"])
def test_auc_needs_both_classes(labels):
    with pytest.raises(ValueError, match="both classes"):
        metrics.auc(labels, np.arange(len(labels)))


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 2], [0.1, 0.2], "0 or 1, got 2"),
        ([0, 1], [0.1], "shapes"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
    ids=["label_2", "lengths_differ", "two_dims", "nan_score"],
)
def test_auc_rejects_bad_input(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        metrics.auc(labels, scores)


def test_log_loss_matches_the_formula():
    labels, probabilities = [1, 0, 1, 0], [0.9, 0.2, 0.5, 0.999]
    want = -(math.log(0.9) + math.log(0.8) + math.log(0.5) + math.log(0.001)) / 4
    assert metrics.log_loss(labels, probabilities) == pytest.approx(want, rel=1e-12)


@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.floats(1e-6, 1 - 1e-6)), min_size=1, max_size=30
    )
)
def test_log_loss_matches_the_formula_on_random_cases(pairs):
    labels, probabilities = zip(*pairs, strict=True)
    want = -sum(math.log(p) if y == 1 else math.log(1 - p) for y, p in pairs) / len(
        pairs
    )
    got = metrics.log_loss(list(labels), list(probabilities))
    assert got == pytest.approx(want, rel=1e-9)


def test_log_loss_clips_certain_mistakes_to_a_finite_cost():
    loss = metrics.log_loss([1, 0], np.array([0.0, 1.0], np.float32), eps=1e-7)
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_log_loss_rejects_labels_that_are_not_binary():
    with pytest.raises(ValueError, match="log_loss: labels must be 0 or 1"):
        metrics.log_loss([0.5, 1], [0.5, 0.5])


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The AUC from its definition: positives against negatives, ties 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (
        pos[:, None] == neg[None, :]
    ).sum()
    return wins / (pos.size * neg.size)


@pytest.mark.parametrize("chunk", [1, 4, 64], ids=["chunk_1", "chunk_4", "chunk_64"])
def test_bootstrap_aucs_are_the_aucs_of_explicit_resamples(chunk):
    # Arrange: tied scores on purpose (rounded), three models.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 120)
    scores = np.round(rng.normal(size=(3, 120)) + labels, 1)

    # Act
    got = metrics.bootstrap_aucs(labels, scores, rounds=6, seed=3, chunk=chunk)

    # Assert: the same draws, made by hand, scored from the definition.
    draws = np.random.default_rng(3)
    for start in range(0, 6, chunk):
        count = min(chunk, 6 - start)
        weights = draws.multinomial(120, np.full(120, 1 / 120), size=count)
        for offset, w in enumerate(weights):
            picked = np.repeat(np.arange(120), w)
            want = [_pairwise_auc(labels[picked], s[picked]) for s in scores]
            assert got[start + offset] == pytest.approx(want, rel=1e-12)


def test_bootstrap_aucs_reject_scores_of_another_length():
    with pytest.raises(ValueError, match=r"scores must be \[m, 3\]"):
        metrics.bootstrap_aucs([0, 1, 1], [[0.1, 0.2]])
