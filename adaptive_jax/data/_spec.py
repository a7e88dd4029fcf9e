"""The parameters of the synthetic Criteo data: its vocabularies, missing values,
click model and late ids, as one frozen, validated dataclass.

The defaults follow the Kaggle Criteo set's shape: a few small vocabularies
(C9 has 3 values, C20 4), some of thousands, ten of millions (capped at 5M),
and its missing rates per column; the effects are scaled so that the Bayes AUC
is about 0.79 and the click rate about 25%.
"""

from __future__ import annotations

import dataclasses

from adaptive_jax.data import _batch

VOCABULARY_SIZES = (
    1_500, 600, 5_000_000, 2_000_000, 300, 24, 1_000_000, 600, 3, 1_000_000,
    50_000, 4_000_000, 3_000, 27, 1_000_000, 3_000_000, 10, 50_000, 2_000, 4,
    3_500_000, 18, 15, 1_500_000, 100, 1_000_000,
)  # fmt: skip
CATEGORICAL_MISSING_RATES = (
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0,
    0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44,
)  # fmt: skip
DENSE_MISSING_RATES = (
    0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What the synthetic data set is drawn from; the seed picks one draw.

    Attributes:
      vocabulary_sizes: ranks per categorical feature, one per `C1..C26`.
      categorical_missing_rates: chance that a categorical value is missing.
      dense_missing_rates: chance that an integer feature is missing, one per
        `I1..I13`.
      zipf_exponent: s of the ranks' power law, `P(rank) ~ rank**-s`.
      id_effect_scale: standard deviation of an id's own effect on the logit.
      shared_effect_scale: scale of the effect every id of a popularity class
        (`floor(log2(rank))`) shares: rare ids, new or old, behave alike.
      dense_effect_scale: standard deviation of the integer features' effect.
      bias: the logit's constant; sets the click rate.
      late_fraction: the fraction of a feature's ranks that are late: never
        drawn before `late_start`, drawn as often as the others after it.
      late_start: where late ids start, as a fraction of the stream.
      late_min_vocabulary: only features with at least this many ranks have
        late ids (new users and ads, not new device types).
    """

    vocabulary_sizes: tuple[int, ...] = VOCABULARY_SIZES
    categorical_missing_rates: tuple[float, ...] = CATEGORICAL_MISSING_RATES
    dense_missing_rates: tuple[float, ...] = DENSE_MISSING_RATES
    zipf_exponent: float = 1.2
    id_effect_scale: float = 0.25
    shared_effect_scale: float = 0.25
    dense_effect_scale: float = 0.5
    bias: float = -1.9
    late_fraction: float = 0.05
    late_start: float = 0.65
    late_min_vocabulary: int = 10_000

    def __post_init__(self):
        num_categorical = len(_batch.CATEGORICAL_COLUMNS)
        num_dense = len(_batch.INTEGER_COLUMNS)
        for name, length in (
            ("vocabulary_sizes", num_categorical),
            ("categorical_missing_rates", num_categorical),
            ("dense_missing_rates", num_dense),
        ):
            values = tuple(getattr(self, name))  # JSON gives lists
            object.__setattr__(self, name, values)
            if len(values) != length:
                raise ValueError(
                    f"SyntheticSpec.{name} has {len(values)} values, expected "
                    f"{length} (one per column)"
                )
        _check_range("vocabulary_sizes", self.vocabulary_sizes, 1, 2**32 - 1)
        _check_range("categorical_missing_rates", self.categorical_missing_rates)
        _check_range("dense_missing_rates", self.dense_missing_rates)
        _check_range("zipf_exponent", [self.zipf_exponent], 0.01, 10.0)
        for name in ("id_effect_scale", "shared_effect_scale", "dense_effect_scale"):
            _check_range(name, [getattr(self, name)], 0.0, 10.0)
        _check_range("late_fraction", [self.late_fraction], 0.0, 0.5)
        _check_range("late_start", [self.late_start])
        _check_range("late_min_vocabulary", [self.late_min_vocabulary], 100, 2**32)


def _check_range(name: str, values, low: float = 0.0, high: float = 1.0) -> None:
    """Raises a ValueError naming the field unless `low <= value <= high`."""
    for value in values:
        if not low <= value <= high:
            raise ValueError(
                f"SyntheticSpec.{name}: {value!r} is out of range [{low}, {high}]"
            )
