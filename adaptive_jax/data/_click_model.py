"""The hidden click model of the synthetic Criteo data, drawn with numpy.

An id is a (feature, rank) pair; rank 1 is the most frequent. All that an id
is comes from a counter-based hash of (seed, feature, rank), so no table of a
feature's millions of ids is ever built:

- its value: 8 hex digits, a bijection of the rank per feature (fmix32 of the
  rank xor a per-feature salt), the same for every seed;
- its own effect on the logit: a standard normal (splitmix64 of the counter,
  then Box-Muller), times `id_effect_scale`;
- its shared effect: a random walk over popularity classes
  `floor(log2(rank))`, so that neighbouring classes, and rare ids, new or
  old, behave alike;
- whether it is late: a uniform below `late_fraction`.

Ranks follow a discretised power law: `round(X)`, X of density `x**-s` on
`[0.5, vocabulary + 0.5]`, drawn by inverting its distribution function.
"""

from __future__ import annotations

import numpy as np

from adaptive_jax.data import _spec
from adaptive_jax.ids._device_hash import fmix32

_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment
_ID_EFFECT, _ID_EFFECT_ANGLE, _SHARED, _SHARED_ANGLE, _LATE, _DENSE, _DENSE_ANGLE = (
    range(1, 8)
)  # the hash's streams, one per use
DENSE_LOG_MEANS = np.array(
    [0.7, 3.0, 1.9, 1.6, 7.6, 3.4, 1.4, 2.2, 3.7, 0.5, 0.7, 0.3, 1.6]
)  # log1p of Criteo's medians, roughly
DENSE_LOG_STD = 1.2
DENSE_OFFSETS = np.array([0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # I2 goes to -3


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that mixes every bit."""
    x = x ^ (x >> 30)
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> 27)
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> 31)


def uniforms(seed: int, stream: int, feature: int, counters: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1), one per counter, a pure function of all four."""
    key = np.zeros(1, np.uint64)
    for part in (seed, stream, feature):
        key = mix64(key ^ np.uint64(part))
    bits = mix64(np.asarray(counters, np.uint64) * np.uint64(_GOLDEN) + key)
    return ((bits >> 11).astype(np.float64) + 0.5) * 2.0**-53


def normals(
    seed: int, streams: tuple[int, int], feature: int, counters: np.ndarray
) -> np.ndarray:
    """Standard normals, one per counter (Box-Muller on two hash streams)."""
    radius = np.sqrt(-2.0 * np.log(uniforms(seed, streams[0], feature, counters)))
    angle = 2.0 * np.pi * uniforms(seed, streams[1], feature, counters)
    return radius * np.cos(angle)


def category_ids(feature: int, ranks: np.ndarray) -> np.ndarray:
    """The uint32 value of each rank of a feature: distinct ranks, distinct ids."""
    salt = mix64(np.array([feature + 1], np.uint64)).astype(np.uint32)
    return fmix32(ranks.astype(np.uint32) ^ salt)


def draw_ranks(
    rng: np.random.Generator, vocabulary: int, exponent: float, size: int
) -> np.ndarray:
    """`size` ranks in [1, vocabulary] of the power law `rank**-exponent`."""
    low, high, u = 0.5, vocabulary + 0.5, rng.random(size)
    if exponent == 1.0:
        x = low * (high / low) ** u
    else:
        power = 1.0 - exponent
        x = (low**power + u * (high**power - low**power)) ** (1.0 / power)
    return np.clip(np.floor(x + 0.5), 1, vocabulary).astype(np.int64)


def is_late(
    spec: _spec.SyntheticSpec, seed: int, feature: int, ranks: np.ndarray
) -> np.ndarray:
    """Whether each rank of the feature is a late id."""
    if spec.vocabulary_sizes[feature] < spec.late_min_vocabulary:
        return np.zeros(np.shape(ranks), bool)
    return uniforms(seed, _LATE, feature, ranks) < spec.late_fraction


def draw_feature(
    rng: np.random.Generator,
    spec: _spec.SyntheticSpec,
    seed: int,
    feature: int,
    early: np.ndarray,
) -> np.ndarray:
    """Ranks of one feature for a run of examples; where `early`, late ranks
    are drawn again until none is left (so late ids are never seen there)."""
    vocabulary = spec.vocabulary_sizes[feature]
    exponent = spec.exponents[feature]
    ranks = draw_ranks(rng, vocabulary, exponent, early.size)
    redo = np.flatnonzero(early & is_late(spec, seed, feature, ranks))
    while redo.size:
        ranks[redo] = draw_ranks(rng, vocabulary, exponent, redo.size)
        redo = redo[is_late(spec, seed, feature, ranks[redo])]
    return ranks


def id_effects(
    spec: _spec.SyntheticSpec, seed: int, feature: int, ranks: np.ndarray
) -> np.ndarray:
    """Each rank's effect on the logit: its own, plus its popularity class's."""
    own = normals(seed, (_ID_EFFECT, _ID_EFFECT_ANGLE), feature, ranks)
    classes = np.floor(np.log2(ranks)).astype(np.int64)
    return spec.id_effect_scale * own + _shared_curve(spec, seed, feature)[classes]


def _shared_curve(spec: _spec.SyntheticSpec, seed: int, feature: int) -> np.ndarray:
    """The shared effect of each popularity class: a random walk whose end has
    standard deviation `shared_effect_scale`."""
    num_classes = int(np.log2(spec.vocabulary_sizes[feature])) + 1
    steps = normals(seed, (_SHARED, _SHARED_ANGLE), feature, np.arange(num_classes))
    return spec.shared_effect_scale * np.cumsum(steps) / np.sqrt(num_classes)


def draw_dense(
    rng: np.random.Generator, spec: _spec.SyntheticSpec, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Integer features: heavy-tailed counts `floor(exp(N(mu, sd))) - offset`,
    and their missing masks. Returns `([size, 13] int64, [size, 13] bool)`."""
    logs = DENSE_LOG_MEANS + DENSE_LOG_STD * rng.standard_normal(
        (size, DENSE_LOG_MEANS.size)
    )
    values = np.floor(np.exp(logs)).astype(np.int64) - DENSE_OFFSETS
    missing = rng.random((size, DENSE_LOG_MEANS.size)) < np.asarray(
        spec.dense_missing_rates
    )
    return np.where(missing, 0, values), missing


def dense_effects(
    spec: _spec.SyntheticSpec, seed: int, values: np.ndarray, missing: np.ndarray
) -> np.ndarray:
    """A linear effect of the standardised `log1p(max(x, 0))`; 0 where missing."""
    columns = np.arange(DENSE_LOG_MEANS.size)
    weights = normals(seed, (_DENSE, _DENSE_ANGLE), 0, columns) / np.sqrt(columns.size)
    standard = (np.log1p(np.maximum(values, 0)) - DENSE_LOG_MEANS) / DENSE_LOG_STD
    return spec.dense_effect_scale * np.where(missing, 0.0, standard) @ weights


PILOT_EXAMPLES = 20_000  # drawn to solve the logit's constant for a click rate


def logits_without_bias(
    rng: np.random.Generator, spec: _spec.SyntheticSpec, seed: int, size: int
) -> np.ndarray:
    """The click model's logits of `size` fresh examples, less the constant;
    late ids may appear in the same last part of them as of a stream."""
    early = np.arange(size) < round(spec.late_start * size)
    dense, missing = draw_dense(rng, spec, size)
    logit = dense_effects(spec, seed, dense, missing)
    for feature, rate in enumerate(spec.categorical_missing_rates):
        ranks = draw_feature(rng, spec, seed, feature, early)
        present = rng.random(size) >= rate
        logit += np.where(present, id_effects(spec, seed, feature, ranks), 0.0)
    return logit


def solve_bias(spec: _spec.SyntheticSpec, seed: int) -> float:
    """The logit's constant for `seed`: `spec.bias`, or, with a `click_rate`,
    the constant whose mean click probability over a pilot draw (its own
    random stream, so the data's draws do not move) is that rate: the rate of
    a whole stream, train and test together."""
    if spec.click_rate is None:
        return spec.bias
    rng = np.random.default_rng([seed, 1])
    logit = logits_without_bias(rng, spec, seed, PILOT_EXAMPLES)
    low, high = -20.0, 20.0
    for _ in range(60):  # the mean probability rises with the constant
        middle = (low + high) / 2
        mean = np.mean(1.0 / (1.0 + np.exp(-(logit + middle))))
        low, high = (middle, high) if mean < spec.click_rate else (low, middle)
    return (low + high) / 2
