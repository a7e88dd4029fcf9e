"""Options of embedding variables, with DeepRec's names.

`EmbeddingVariableOption` gathers them: the capacity of the dynamic table (JAX
needs static shapes; DeepRec's hash maps grow), the initializer option, and the
admission and eviction policies. Each is a frozen dataclass: hashable, so a
column holding it can be a static argument of a jitted function, and checked at
construction, with an error that names the option and the field.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import _numerics
from adaptive_jax import table as table_lib
from adaptive_jax.table import _sketch

Initializer = Callable  # (key, shape, dtype) -> array, as jax.nn.initializers


def _require(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{option}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_ints(option: object, *fields: str) -> None:
    """Stores NumPy integers of `fields` as Python ints (`np.int64(10)` is taken
    where 10 is, and the option hashes and prints as with 10)."""
    for field in fields:
        object.__setattr__(option, field, _numerics.python_int(getattr(option, field)))


@dataclasses.dataclass(frozen=True)
class InitializerOption:
    """How a plain embedding variable initialises a new key's row (DeepRec).

    Attributes:
      initializer: draws the `[default_value_dim, dim]` default values; None for
        the embedding column's initializer.
      default_value_dim: rows of default values; a new key `k` starts from row
        `k % default_value_dim` (the bits of `k` as an unsigned 64-bit number).
        At most 65,536.
      default_value_no_permission: the value of a key that is not admitted yet
        (with a filter), in a plain embedding-variable column.
    """

    initializer: Initializer | None = None
    default_value_dim: int = 4096
    default_value_no_permission: float = 0.0

    def __post_init__(self):
        _as_ints(self, "default_value_dim")
        _require(
            _is_int(self.default_value_dim) and 1 <= self.default_value_dim <= 65536,
            "InitializerOption",
            f"default_value_dim must be an int in [1, 65536], got "
            f"{self.default_value_dim!r}",
        )


class AdmissionFilter(abc.ABC):
    """Admits an id into the dynamic table once its count reaches `filter_freq`.

    The counts of ids that have no row yet live in a fixed-size sketch beside
    the tables (`table._sketch`: a count-min sketch with conservative update),
    never in a structure that grows. Its memory is sized from the stream, not
    from the table: `max_element_size`, the distinct ids expected (a
    partitioned table's sketches share them), and
    `false_positive_probability`, the chance that an id never seen before
    finds all its counters taken once that many ids are counted (so that, at
    `filter_freq=2`, it would be admitted on first sight; at 3 and more, far
    less). Past `max_element_size` distinct ids the sketch halves its counters
    and forgets the ids seen once, so a count is a recent count.
    """

    filter_freq: int
    max_element_size: int
    false_positive_probability: float

    @abc.abstractmethod
    def sketch_shape(self, capacity: int, partitions: int = 1) -> tuple[int, int]:
        """(depth, width) of the sketch of one partition, one of `partitions`
        (`capacity`, the partition's rows, does not size it)."""

    @abc.abstractmethod
    def halve_at(self, width: int) -> float:
        """The distinct ids a sketch row of `width` counters was sized for: at
        this many the sketch halves."""

    @property
    def counter_dtype(self) -> np.dtype:
        """The sketch's counters: uint8 up to a `filter_freq` of 255."""
        return _sketch.counter_dtype(self.filter_freq)

    def sketch_bytes(self, partitions: int = 1) -> int:
        """Bytes of the sketch's counters, all partitions together."""
        depth, width = self.sketch_shape(0, partitions)
        return partitions * depth * width * self.counter_dtype.itemsize

    def admits(self, counts: jax.Array) -> jax.Array:
        """Whether ids with these counts are admitted: `count >= filter_freq`."""
        return counts >= self.filter_freq

    def _check(self, name: str) -> None:
        _require(
            _is_int(self.filter_freq) and 1 <= self.filter_freq <= 2**31 - 1,
            name,
            f"filter_freq must be an int in [1, 2**31 - 1], got {self.filter_freq!r}",
        )
        _require(
            _is_int(self.max_element_size) and self.max_element_size >= 1,
            name,
            f"max_element_size must be an int >= 1 (the distinct ids expected), "
            f"got {self.max_element_size!r}",
        )
        _require(
            isinstance(self.false_positive_probability, float | int)
            and 0.0 < self.false_positive_probability < 1.0,
            name,
            "false_positive_probability must be in (0, 1), got "
            f"{self.false_positive_probability!r}",
        )


@dataclasses.dataclass(frozen=True)
class CounterFilter(AdmissionFilter):
    """Admits a key into the dynamic table once its count reaches `filter_freq`.

    DeepRec keeps the counts exactly, in a hash map that grows; here they sit in
    a count-min sketch of `sketch_depth` rows, each wide enough that with
    `max_element_size` distinct ids counted, a new id finds all its counters
    taken with probability `false_positive_probability`: `width =
    max_element_size / -ln(1 - p ** (1 / depth))`, 3.2 counters per expected
    id and row at the defaults, 13.6 MB of uint8 counters for the default 2**20
    ids. A count may come out high, never low. On a Zipf(1.1) stream of 145K
    distinct ids (`benchmarks/admission_bench.py`) the defaults admit with a
    precision and recall over 99% at filter_freq 2 and 3.
    """

    filter_freq: int
    max_element_size: int = dataclasses.field(default=2**20, kw_only=True)
    false_positive_probability: float = dataclasses.field(default=0.005, kw_only=True)
    sketch_depth: int = dataclasses.field(default=4, kw_only=True)

    def __post_init__(self):
        _as_ints(self, "filter_freq", "max_element_size", "sketch_depth")
        self._check("CounterFilter")
        _require(
            _is_int(self.sketch_depth) and 1 <= self.sketch_depth <= 16,
            "CounterFilter",
            f"sketch_depth must be an int in [1, 16], got {self.sketch_depth!r}",
        )

    def sketch_shape(self, capacity: int, partitions: int = 1) -> tuple[int, int]:
        del capacity  # sized from the expected ids instead
        keys = -(-self.max_element_size // partitions)  # a partition's share
        return _sketch.count_min_shape(
            keys, self.sketch_depth, self.false_positive_probability
        )

    def halve_at(self, width: int) -> float:
        load = _sketch.count_min_load(
            self.sketch_depth, self.false_positive_probability
        )
        return width * load


@dataclasses.dataclass(frozen=True)
class CBFFilter(AdmissionFilter):
    """`CounterFilter` with the counts in a counting Bloom filter of fixed size,
    sized for `max_element_size` keys at `false_positive_probability` by the
    Bloom rule (`k = -log2(p)` rows, 1.44 log2(1/p) counters per key in all):
    the least memory for the rate, in more rows than `CounterFilter`'s (a
    slower step)."""

    filter_freq: int
    max_element_size: int
    false_positive_probability: float

    def __post_init__(self):
        _as_ints(self, "filter_freq", "max_element_size")
        self._check("CBFFilter")

    def sketch_shape(self, capacity: int, partitions: int = 1) -> tuple[int, int]:
        del capacity  # sized from the expected number of keys instead
        keys = -(-self.max_element_size // partitions)  # a partition's share
        return _sketch.bloom_shape(keys, self.false_positive_probability)

    def halve_at(self, width: int) -> float:
        # From m = k * width = -n ln p / ln(2)**2, with k = round(m / n ln 2).
        hashes, _ = _sketch.bloom_shape(
            self.max_element_size, self.false_positive_probability
        )
        return (
            hashes
            * width
            * math.log(2) ** 2
            / -math.log(self.false_positive_probability)
        )


class RowState(NamedTuple):
    """What an eviction policy may look at, for every row of the table."""

    step: jax.Array  # [] int32, the global step
    last_step: jax.Array  # [capacity] int32
    freq: jax.Array  # [capacity] int32
    values: jax.Array  # [capacity, dim]
    live: jax.Array  # [capacity] bool


class EvictionPolicy(abc.ABC):
    """Chooses rows of the dynamic table to evict; `reason` names it in the
    statistics."""

    reason: str

    @abc.abstractmethod
    def evict(self, rows: RowState) -> jax.Array:
        """`[capacity] bool`: the live rows to evict."""


@dataclasses.dataclass(frozen=True)
class GlobalStepEvict(EvictionPolicy):
    """Evicts a row when `global_step - last_step > steps_to_live`."""

    steps_to_live: int
    reason = "steps"

    def __post_init__(self):
        _as_ints(self, "steps_to_live")
        _require(
            _is_int(self.steps_to_live) and self.steps_to_live >= 1,
            "GlobalStepEvict",
            f"steps_to_live must be an int >= 1, got {self.steps_to_live!r}",
        )

    def evict(self, rows: RowState) -> jax.Array:
        return rows.live & (rows.step - rows.last_step > self.steps_to_live)


@dataclasses.dataclass(frozen=True)
class L2WeightEvict(EvictionPolicy):
    """Evicts a row when `0.5 * sum(value**2) < l2_weight_threshold` (DeepRec's 0.5)."""

    l2_weight_threshold: float
    reason = "l2"

    def __post_init__(self):
        _require(
            self.l2_weight_threshold >= 0.0,
            "L2WeightEvict",
            "l2_weight_threshold must be a number >= 0, got "
            f"{self.l2_weight_threshold!r}",
        )

    def evict(self, rows: RowState) -> jax.Array:
        energy = 0.5 * jnp.sum(jnp.square(rows.values.astype(jnp.float32)), axis=1)
        return rows.live & (energy < self.l2_weight_threshold)


@dataclasses.dataclass(frozen=True)
class PressureEvict(EvictionPolicy):
    """When the table is fuller than `max_load`, evicts its weakest rows, down to
    about `target_load`, so that newcomers find room instead of being refused.

    Weakest: the stalest (`score="staleness"`: the oldest `last_step`), the
    least frequent (`"frequency"`), or the lowest of a user's
    `score(rows: RowState) -> [capacity] float`. The cut is the score below
    which enough rows lie, found with a histogram of 1,024 bins (O(capacity), no
    sort), so the load lands at or a little below the target. Not in DeepRec.
    """

    max_load: float = 0.95
    target_load: float = 0.9
    score: str | Callable = "staleness"
    reason = "pressure"

    def __post_init__(self):
        _require(
            0.0 < self.target_load < self.max_load <= 1.0,
            "PressureEvict",
            "need 0 < target_load < max_load <= 1, got "
            f"target_load={self.target_load!r}, max_load={self.max_load!r}",
        )
        _require(
            callable(self.score) or self.score in ("staleness", "frequency"),
            "PressureEvict",
            f"score must be 'staleness', 'frequency' or a function, got {self.score!r}",
        )

    def _scores(self, rows: RowState) -> jax.Array:
        if self.score == "staleness":
            return rows.last_step.astype(jnp.float32)
        if self.score == "frequency":
            return jnp.log1p(rows.freq.astype(jnp.float32))
        return self.score(rows).astype(jnp.float32)

    def evict(self, rows: RowState) -> jax.Array:
        capacity = rows.live.shape[0]
        live = jnp.sum(rows.live, dtype=jnp.int32)
        excess = live - jnp.int32(math.floor(self.target_load * capacity))
        under_pressure = live > jnp.int32(math.floor(self.max_load * capacity))
        scores = self._scores(rows)
        low = jnp.min(jnp.where(rows.live, scores, jnp.inf))
        high = jnp.max(jnp.where(rows.live, scores, -jnp.inf))
        bins = 1024
        width = jnp.maximum(high - low, 1e-30) / bins
        index = jnp.clip(((scores - low) / width).astype(jnp.int32), 0, bins - 1)
        counts = (
            jnp.zeros(bins, jnp.int32)
            .at[jnp.where(rows.live, index, bins)]
            .add(1, mode="drop")
        )
        # The fewest whole bins, from the bottom, that hold the excess rows.
        cut = jnp.argmax(jnp.cumsum(counts) >= excess)
        return rows.live & under_pressure & (index <= cut)


@dataclasses.dataclass(frozen=True)
class EmbeddingVariableOption:
    """The options of an embedding variable (a dynamic table), as DeepRec's.

    Attributes:
      capacity: rows of the dynamic table, fixed (JAX needs static shapes). Ids
        past it are refused a row and counted; an adaptive column serves them
        from their static bucket.
      init_option: `InitializerOption`.
      filter_option: `CounterFilter` or `CBFFilter`, or None.
      evict_option: an `EvictionPolicy` (`GlobalStepEvict`, `L2WeightEvict`,
        `PressureEvict`), a tuple of them (a row goes if any evicts it), or None.
      l1_mode: FTRL's L1 on the variable's rows: "row" (DeepRec's group lasso,
        the default) or "coordinate" (TensorFlow's).
    """

    capacity: int = 2**16
    init_option: InitializerOption = InitializerOption()
    filter_option: AdmissionFilter | None = None
    evict_option: EvictionPolicy | tuple[EvictionPolicy, ...] | None = None
    l1_mode: Literal["row", "coordinate"] = "row"

    def __post_init__(self):
        _as_ints(self, "capacity")
        _require(
            _is_int(self.capacity) and 1 <= self.capacity <= table_lib.MAX_CAPACITY,
            "EmbeddingVariableOption",
            f"capacity must be an int in [1, {table_lib.MAX_CAPACITY}], got "
            f"{self.capacity!r}",
        )
        _require(
            self.l1_mode in ("row", "coordinate"),
            "EmbeddingVariableOption",
            f"l1_mode must be 'row' or 'coordinate', got {self.l1_mode!r}",
        )
        for field, kinds in (
            ("init_option", (InitializerOption,)),
            ("filter_option", (AdmissionFilter, type(None))),
        ):
            _require(
                isinstance(getattr(self, field), kinds),
                "EmbeddingVariableOption",
                f"{field} must be one of {[k.__name__ for k in kinds]}, got "
                f"{type(getattr(self, field)).__name__}",
            )
        _require(
            all(isinstance(p, EvictionPolicy) for p in self.evict_policies),
            "EmbeddingVariableOption",
            "evict_option must be an EvictionPolicy (GlobalStepEvict, "
            "L2WeightEvict, PressureEvict) or a tuple of them, got "
            f"{self.evict_option!r}",
        )

    @property
    def evict_policies(self) -> tuple[EvictionPolicy, ...]:
        """The eviction policies, as a tuple (empty without any)."""
        if self.evict_option is None:
            return ()
        if isinstance(self.evict_option, tuple):
            return self.evict_option
        return (self.evict_option,)
