"""The parameters of the synthetic Criteo data: its vocabularies, missing values,
click model and late ids, as one frozen, validated dataclass.

The defaults are calibrated to Criteo's Kaggle set: each column's vocabulary is
its published cardinality (3 to 10.1M values), and the frequency law of its ids,
the missing rates and the click rate are fitted to a real slice of its logs
(`benchmarks/data/calibrate.py`). The click model's effects are this module's
choice, not fitted: the real labels' model is unknown.
"""

from __future__ import annotations

import dataclasses

from adaptive_jax.data import _batch

KAGGLE_CARDINALITIES = (
    1_460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683,
    8_351_593, 3_194, 27, 14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18,
    15, 286_181, 105, 142_572,
)  # fmt: skip
"""The distinct values of C1..C26 in Criteo's Kaggle `train.txt`, as published
(and used to size DLRM's tables)."""
# Fitted to the real Criteo slice by `benchmarks/data/calibrate.py` (its first
# 9,999 lines, a contiguous run of Criteo's train.txt): each column's power-law
# exponent over its Kaggle cardinality, so that a run of that length holds as
# many distinct ids as the slice does (C9, which shows all 3 values, by its top
# value's share; C20's fit stops at the search's bound, 5.0: 3 of its 4 values
# in 5,503 draws), the missing rates, and the click rate.
ZIPF_EXPONENTS = (
    1.8829, 1.4473, 1.0187, 1.0818, 2.4419, 4.8575,
    0.9737, 2.1614, 3.3089, 1.1075, 1.0547, 1.0285,
    1.0422, 2.8183, 1.147, 1.0532, 4.0998, 1.2714,
    1.3395, 5.0, 1.0394, 4.0703, 3.7566, 1.167,
    2.4899, 1.1067,
)  # fmt: skip
CATEGORICAL_MISSING_RATES = (
    0.0, 0.0, 0.0357, 0.0357, 0.0, 0.1331,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0357,
    0.0, 0.0, 0.0, 0.0357, 0.0, 0.0,
    0.4496, 0.4496, 0.0357, 0.8182, 0.0, 0.0357,
    0.4496, 0.4496,
)  # fmt: skip
DENSE_MISSING_RATES = (
    0.448, 0.0, 0.2037, 0.1978, 0.0494, 0.2511,
    0.0492, 0.001, 0.0492, 0.448, 0.0492, 0.7735,
    0.1978,
)  # fmt: skip
CLICK_RATE = 0.2181


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What the synthetic data set is drawn from; the seed picks one draw.

    Attributes:
      vocabulary_sizes: ranks per categorical feature, one per `C1..C26`.
      categorical_missing_rates: chance that a categorical value is missing.
      dense_missing_rates: chance that an integer feature is missing, one per
        `I1..I13`.
      zipf_exponent: s of the ranks' power law, `P(rank) ~ rank**-s`: one for
        every column, or one per column.
      id_effect_scale: standard deviation of an id's own effect on the logit.
      shared_effect_scale: scale of the effect every id of a popularity class
        (`floor(log2(rank))`) shares: rare ids, new or old, behave alike.
      dense_effect_scale: standard deviation of the integer features' effect.
      bias: the logit's constant, where `click_rate` is None.
      click_rate: the click rate to draw: the logit's constant is solved, per
        seed, so that the click model's mean probability on a pilot draw of
        its examples is this (each seed draws its own effects, which move the
        rate a lot: 6% to 22% over seeds 0-4 at a fixed constant). None: use
        `bias`.
      late_fraction: the fraction of a feature's ranks that are late: never
        drawn before `late_start`, drawn as often as the others after it.
      late_start: where late ids start, as a fraction of the stream.
      late_min_vocabulary: only features with at least this many ranks have
        late ids (new users and ads, not new device types).
    """

    vocabulary_sizes: tuple[int, ...] = KAGGLE_CARDINALITIES
    categorical_missing_rates: tuple[float, ...] = CATEGORICAL_MISSING_RATES
    dense_missing_rates: tuple[float, ...] = DENSE_MISSING_RATES
    zipf_exponent: float | tuple[float, ...] = ZIPF_EXPONENTS
    id_effect_scale: float = 0.25
    shared_effect_scale: float = 0.25
    dense_effect_scale: float = 0.5
    bias: float = -1.9
    click_rate: float | None = CLICK_RATE
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
        exponents = self.zipf_exponent
        if isinstance(exponents, list | tuple):
            exponents = tuple(exponents)  # JSON gives lists
            object.__setattr__(self, "zipf_exponent", exponents)
            if len(exponents) != num_categorical:
                raise ValueError(
                    f"SyntheticSpec.zipf_exponent has {len(exponents)} values, "
                    f"expected one or {num_categorical} (one per column)"
                )
        _check_range("zipf_exponent", self.exponents, 0.01, 10.0)
        for name in ("id_effect_scale", "shared_effect_scale", "dense_effect_scale"):
            _check_range(name, [getattr(self, name)], 0.0, 10.0)
        if self.click_rate is not None:
            _check_range("click_rate", [self.click_rate], 0.001, 0.999)
        _check_range("late_fraction", [self.late_fraction], 0.0, 0.5)
        _check_range("late_start", [self.late_start])
        _check_range("late_min_vocabulary", [self.late_min_vocabulary], 100, 2**32)

    @property
    def exponents(self) -> tuple[float, ...]:
        """The power law's exponent of each categorical column."""
        if isinstance(self.zipf_exponent, tuple):
            return self.zipf_exponent
        return (self.zipf_exponent,) * len(self.vocabulary_sizes)


def _check_range(name: str, values, low: float = 0.0, high: float = 1.0) -> None:
    """Raises a ValueError naming the field unless `low <= value <= high`."""
    for value in values:
        if not low <= value <= high:
            raise ValueError(
                f"SyntheticSpec.{name}: {value!r} is out of range [{low}, {high}]"
            )
