"""The embedding columns the CTR example compares, sized from the training data.

Each variant is 26 columns, one per categorical feature, as DeepRec builds
them, stacked into one table (`feature_column.stacked_column`): one lookup to
compile instead of 26 (XLA:CPU took about a minute for 26 separate adaptive
columns, a few seconds for one, on 2 cores), while each feature keeps its own
static segment, sized for it, and its own keys. Four variants, of string ids:

- "static": plain hash-bucket tables, `hash_bucket_size` buckets in all, shared
  by the features in proportion to their distinct training ids (default: one
  bucket per distinct id);
- "dynamic": plain dynamic tables with a row per id: the capacity is the
  number of distinct ids the training data holds, so no id is turned away; a
  new id starts from DeepRec's default values (4096 rows); with
  `pressure_evict` (for a capacity below that, a budget's), the stalest rows
  go when the table is fuller than 95%, so that new ids find room;
- "filtered": plain dynamic tables behind DeepRec's `CounterFilter`: an id
  seen fewer than `filter_freq` times reads `default_value_no_permission`
  (0.0), what a DeepRec user picks to save memory; capacity for the ids that
  reach the threshold, with `headroom`;
- "adaptive": static tables for the rare ids (`adaptive_hash_bucket_size`
  buckets in all, shared in proportion to the features' rare ids; default:
  one bucket per feature, a learnt value for all of its rare ids) and
  dynamic tables for the ids that reach `filter_freq`, each starting from its
  bucket's value (`migration`); with `steps_to_live`, rows unused for that
  many steps are evicted, back to their buckets.

The sizes come from one pass over the training data (`scan.scan`): the
distinct ids of each column and how many reach the threshold; the admission
counts are sized for the distinct ids of all columns. With a `budget` (bytes
of training state, or of the export), `feature_column.size_columns` sizes
every variant from that pass instead: buckets, capacity and threshold (at
least `filter_freq`) that fit it, each with its reason (`sizing`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import adaptive_jax as aj
from adaptive_jax import adaptive, data, stacking
from adaptive_jax import feature_column as fc
from adaptive_jax.examples.ctr import train
from adaptive_jax.examples.ctr.scan import IdCounts

VARIANTS = ("static", "dynamic", "filtered", "adaptive")
MIGRATIONS = (
    adaptive.MIGRATIONS
)  # "deeprec", "warm", "copy", and more as the library adds


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the columns of every variant are built and trained.

    Attributes:
      dimension: the embedding dimension of every column.
      init_stddev: the standard deviation of the tables' truncated-normal
        initializer (and of a plain dynamic table's default values).
      learning_rate: FTRL's learning rate on the tables.
      hash_bucket_size: buckets of the "static" variant, shared by the 26
        columns in proportion to their distinct training ids; None for one
        per distinct training id.
      adaptive_hash_bucket_size: buckets of the "adaptive" variant, shared in
        proportion to the columns' rare ids (seen fewer than `filter_freq`
        times in training); None for one per column.
      filter_freq: the `CounterFilter` threshold of "filtered" and "adaptive".
      steps_to_live: `GlobalStepEvict` of "adaptive", in training steps; None
        for no eviction.
      pressure_evict: `PressureEvict` (the stalest rows) on "dynamic".
      evict_every: steps between eviction passes.
      headroom: capacity over the ids expected to reach the threshold, for the
        count-min sketch's overestimates.
      migration: the adaptive column's migration (`adaptive.MIGRATIONS`).
      budget: bytes that size every variant (`sizing`), overriding the sizes
        above (`filter_freq` becomes the lowest threshold); None for sizes
        from the data alone.
      budget_of: what `budget` bounds: "training" (the embedding state) or
        "export" (the serving export, every row counted).
      rare_zero: fields of the "adaptive" variant whose rare and unseen ids
        read 0, as in "filtered": they keep their rows and admission but get
        no bucket (a second stacked column, `RARE_ZERO_KEY`, of filtered
        members), for fields whose buckets a validation split showed to cost
        more than they give (`choice`: `--rare-zero auto`).
    """

    dimension: int = 8
    init_stddev: float = 0.01
    learning_rate: float = 0.005
    hash_bucket_size: int | None = None
    adaptive_hash_bucket_size: int | None = None
    filter_freq: int = 3
    steps_to_live: int | None = None
    pressure_evict: bool = False
    evict_every: int = 10
    headroom: float = 1.25
    migration: str = "fitted"
    budget: int | None = None
    budget_of: str = "training"
    rare_zero: tuple[str, ...] = ()

    def __post_init__(self):
        for name in (
            "hash_bucket_size",
            "adaptive_hash_bucket_size",
            "steps_to_live",
            "budget",
        ):
            if getattr(self, name) is not None:
                _require_at_least(name, getattr(self, name), 1)
        for name in ("dimension", "filter_freq", "evict_every"):
            _require_at_least(name, getattr(self, name), 1)
        for name in ("init_stddev", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"Settings.{name} must be > 0, got {getattr(self, name)!r}"
                )
        if not self.headroom >= 1.0:
            raise ValueError(f"Settings.headroom must be >= 1, got {self.headroom!r}")
        if self.budget_of not in fc.BUDGETS:
            raise ValueError(
                f"Settings.budget_of must be one of {fc.BUDGETS}, got "
                f"{self.budget_of!r}"
            )
        unknown = sorted(set(self.rare_zero) - set(data.CATEGORICAL_COLUMNS))
        if unknown or len(set(self.rare_zero)) != len(self.rare_zero):
            raise ValueError(
                f"Settings.rare_zero must name distinct fields of "
                f"{data.CATEGORICAL_COLUMNS[0]}..{data.CATEGORICAL_COLUMNS[-1]}, "
                f"got {self.rare_zero!r}"
            )
        if self.rare_zero and self.budget is not None:
            raise ValueError(
                "Settings.rare_zero and Settings.budget cannot be combined: the "
                "budget sizes one stacked column per variant"
            )
        if self.migration not in MIGRATIONS:
            raise ValueError(
                f"Settings.migration must be one of {MIGRATIONS}, got "
                f"{self.migration!r}"
            )

    def sized(self, counts: IdCounts) -> Settings:
        """These settings with every size left to the data read off `counts`."""
        static = self.hash_bucket_size or max(1, counts.distinct_total)
        with_buckets = len(set(counts.distinct) - set(self.rare_zero))
        adaptive_buckets = self.adaptive_hash_bucket_size or max(1, with_buckets)
        return dataclasses.replace(
            self, hash_bucket_size=static, adaptive_hash_bucket_size=adaptive_buckets
        )


def sizing(variant: str, counts: IdCounts, settings: Settings) -> fc.Sizing:
    """The stacked column of `variant` sized by `settings.budget` from `counts`
    (`feature_column.size_columns`), with the reasons.

    Raises:
      ValueError: an unknown variant, no budget, or a budget too small (the
        message says how much is needed).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if settings.budget is None:
        raise ValueError("Settings.budget: give the bytes to size the columns by")
    return fc.size_columns(
        {k: counts.frequency_counts[k] for k in data.CATEGORICAL_COLUMNS},
        settings.dimension,
        train.optimizers(settings.learning_rate).tables,
        {settings.budget_of: settings.budget},
        kind=variant,
        min_filter_freq=settings.filter_freq,
        headroom=settings.headroom,
        stack_key=FIELDS_KEY,
        migration=settings.migration,
        initializer=_initializer(settings),
        evict_option=_evict(variant, settings),
    )


def _evict(variant: str, settings: Settings):
    """The eviction of `variant`'s dynamic tables, or None."""
    if variant == "adaptive" and settings.steps_to_live is not None:
        return aj.GlobalStepEvict(settings.steps_to_live)
    if variant == "dynamic" and settings.pressure_evict:
        return aj.PressureEvict()
    return None


def per_id_bytes(counts: IdCounts, settings: Settings) -> int:
    """Bytes of the "dynamic" variant sized by the data (a row per distinct
    training id), in training or in its export as `settings.budget_of` says:
    what a budget is a fraction of."""
    table = columns("dynamic", counts, dataclasses.replace(settings, budget=None))
    tables = train.optimizers(settings.learning_rate).tables
    if settings.budget_of == "export":
        return fc.export_bytes_bound(table, tables)
    return fc.state_bytes(table, tables)


def describe(
    settings: Settings, counts: IdCounts, names: tuple[str, ...] = VARIANTS
) -> list[str]:
    """One line per variant: its tables' sizes, and where they come from (with
    a budget: the sizing's reasons, and one line per feature, for the variants
    `names`)."""
    if settings.budget is not None:
        per_id = per_id_bytes(counts, settings)
        lines = [
            f"a row per id (the dynamic variant sized by the data) takes {per_id:,} "
            f"bytes of {settings.budget_of}: the budget is "
            f"{settings.budget / per_id:.3g} of it"
        ]
        for variant in names:
            sized = sizing(variant, counts, settings)
            lines.append(f"{variant}: {sized.reason}")
            lines += [f"  {size.reason}" for size in sized.sizes.values()]
        return lines
    frequent = sum(counts.reaching(k, settings.filter_freq) for k in counts.distinct)
    sized = settings.sized(counts)
    rows = sum(
        _capacity(counts.reaching(k, settings.filter_freq), settings.headroom)
        for k in counts.distinct
    )
    evict = (
        "never evicted"
        if settings.steps_to_live is None
        else f"evicted after {settings.steps_to_live} idle steps"
    )
    return [
        f"static: {sized.hash_bucket_size:,} buckets over the 26 columns by their "
        f"distinct ids ({_source(settings.hash_bucket_size, 'one per distinct id')})",
        f"dynamic: {counts.distinct_total:,} rows, one per distinct training id",
        f"filtered: {rows:,} rows for the {frequent:,} ids seen >= "
        f"{settings.filter_freq} times (x{settings.headroom} headroom); the others "
        "read 0",
        f"adaptive: {sized.adaptive_hash_bucket_size:,} buckets over the "
        f"{len(data.CATEGORICAL_COLUMNS) - len(settings.rare_zero)} columns "
        f"{'with buckets ' if settings.rare_zero else ''}by their rare ids "
        f"({_source(settings.adaptive_hash_bucket_size, 'one per column')}), "
        f"{rows:,} rows as filtered, {evict}, migration "
        f"'{settings.migration}'"
        + (
            f"; the rare ids of {', '.join(settings.rare_zero)} read 0"
            if settings.rare_zero
            else ""
        ),
    ]


def _source(given: int | None, default: str) -> str:
    return "as given" if given is not None else f"the default: {default}"


def _require_at_least(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"Settings.{name} must be an int >= {least}, got {value!r}")


FIELDS_KEY = "fields"  # the key of the stacked column
RARE_ZERO_KEY = "fields_rare_zero"  # adaptive's fields of `Settings.rare_zero`


def _capacity(expected: int, headroom: float) -> int:
    return max(16, math.ceil(expected * headroom))


def columns(
    variant: str, counts: IdCounts, settings: Settings
) -> list[fc.EmbeddingColumn]:
    """The stacked embedding column of `variant`, sized from `counts`.

    Raises:
      ValueError: an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if settings.budget is not None:
        return list(sizing(variant, counts, settings).columns)
    return [
        fc.embedding_column(
            categorical, settings.dimension, initializer=_initializer(settings)
        )
        for categorical in _categorical(variant, counts, settings.sized(counts))
    ]


def _initializer(settings: Settings):
    return aj.initializers.truncated_normal(stddev=settings.init_stddev)


def _categorical(
    variant: str, counts: IdCounts, settings: Settings
) -> list[fc.CategoricalColumn]:
    """The 26 columns of `variant`, sized from the data, stacked into one (two
    for "adaptive" with `settings.rare_zero`: its fields without buckets)."""
    keys = data.CATEGORICAL_COLUMNS
    if variant == "static":
        sizes = stacking.proportional_sizes(counts.distinct, settings.hash_bucket_size)
        members = [
            fc.categorical_column_with_hash_bucket(k, sizes[k], dtype="string")
            for k in keys
        ]
        return [fc.stacked_column(members, FIELDS_KEY)]
    if variant == "dynamic":
        members = [
            fc.categorical_column_with_embedding(
                k,
                "string",
                ev_option=aj.EmbeddingVariableOption(
                    capacity=max(1, counts.distinct[k]),
                    evict_option=_evict(variant, settings),
                ),
            )
            for k in keys
        ]
        return [fc.stacked_column(members, FIELDS_KEY)]
    if variant == "filtered":
        return [_filtered(keys, FIELDS_KEY, counts, settings, variant)]
    with_buckets = [k for k in keys if k not in settings.rare_zero]
    rare_zero = [k for k in keys if k in settings.rare_zero]
    stacks = []
    if with_buckets:
        stacks.append(_adaptive(with_buckets, counts, settings))
    if rare_zero:
        key = RARE_ZERO_KEY if with_buckets else FIELDS_KEY
        stacks.append(_filtered(rare_zero, key, counts, settings, variant))
    return stacks


def _admitted(
    keys: Sequence[str], counts: IdCounts, settings: Settings, variant: str
) -> Callable[[str], aj.EmbeddingVariableOption]:
    """Each field's rows and admission, the admission counts sized for the
    distinct ids of `keys` that the scan found."""
    admission = aj.CounterFilter(
        settings.filter_freq,
        max_element_size=max(1, sum(counts.distinct[k] for k in keys)),
    )
    evict = _evict(variant, settings)

    def option(k: str) -> aj.EmbeddingVariableOption:
        frequent = counts.reaching(k, settings.filter_freq)
        return aj.EmbeddingVariableOption(
            capacity=_capacity(frequent, settings.headroom),
            filter_option=admission,
            evict_option=evict,
        )

    return option


def _filtered(
    keys: Sequence[str], key: str, counts: IdCounts, settings: Settings, variant: str
) -> fc.CategoricalColumn:
    """The fields `keys` as filtered members (rare ids read 0), stacked as `key`."""
    option = _admitted(keys, counts, settings, variant)
    members = [
        fc.categorical_column_with_embedding(k, "string", ev_option=option(k))
        for k in keys
    ]
    return fc.stacked_column(members, key)


def _adaptive(
    keys: Sequence[str], counts: IdCounts, settings: Settings
) -> fc.CategoricalColumn:
    """The fields `keys` as adaptive members, their buckets shared in
    proportion to their rare ids."""
    option = _admitted(keys, counts, settings, "adaptive")
    rare = {
        k: counts.distinct[k] - counts.reaching(k, settings.filter_freq) for k in keys
    }
    sizes = stacking.proportional_sizes(rare, settings.adaptive_hash_bucket_size)
    members = [
        fc.categorical_column_with_adaptive_embedding(
            k,
            sizes[k],
            dtype="string",
            ev_option=option(k),
            migration=settings.migration,
        )
        for k in keys
    ]
    return fc.stacked_column(members, FIELDS_KEY)
