"""Options of embedding variables, with DeepRec's names.

`EmbeddingVariableOption` gathers them: the capacity of the dynamic table (JAX
needs static shapes; DeepRec's hash maps grow), the initializer option, and the
admission and eviction policies. Each is a frozen dataclass: hashable, so a
column holding it can be a static argument of a jitted function, and checked at
construction, with an error that names the option and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

from adaptive_jax import table as table_lib

Initializer = Callable  # (key, shape, dtype) -> array, as jax.nn.initializers


def _require(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{option}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        _require(
            _is_int(self.default_value_dim) and 1 <= self.default_value_dim <= 65536,
            "InitializerOption",
            f"default_value_dim must be an int in [1, 65536], got "
            f"{self.default_value_dim!r}",
        )


@dataclasses.dataclass(frozen=True)
class CounterFilter:
    """Admits a key into the dynamic table once its count reaches `filter_freq`."""

    filter_freq: int

    def __post_init__(self):
        _require(
            _is_int(self.filter_freq) and self.filter_freq >= 1,
            "CounterFilter",
            f"filter_freq must be an int >= 1, got {self.filter_freq!r}",
        )


@dataclasses.dataclass(frozen=True)
class CBFFilter:
    """`CounterFilter` with the counts in a counting Bloom filter of fixed size,
    sized for `max_element_size` keys at `false_positive_probability`."""

    filter_freq: int
    max_element_size: int
    false_positive_probability: float

    def __post_init__(self):
        _require(
            _is_int(self.filter_freq) and self.filter_freq >= 1,
            "CBFFilter",
            f"filter_freq must be an int >= 1, got {self.filter_freq!r}",
        )
        _require(
            _is_int(self.max_element_size) and self.max_element_size >= 1,
            "CBFFilter",
            f"max_element_size must be an int >= 1, got {self.max_element_size!r}",
        )
        _require(
            0.0 < self.false_positive_probability < 1.0,
            "CBFFilter",
            "false_positive_probability must be in (0, 1), got "
            f"{self.false_positive_probability!r}",
        )


@dataclasses.dataclass(frozen=True)
class GlobalStepEvict:
    """Evicts a row when `global_step - last_step > steps_to_live`."""

    steps_to_live: int

    def __post_init__(self):
        _require(
            _is_int(self.steps_to_live) and self.steps_to_live >= 0,
            "GlobalStepEvict",
            f"steps_to_live must be an int >= 0, got {self.steps_to_live!r}",
        )


@dataclasses.dataclass(frozen=True)
class L2WeightEvict:
    """Evicts a row when `0.5 * sum(value**2) < l2_weight_threshold` (DeepRec's 0.5)."""

    l2_weight_threshold: float

    def __post_init__(self):
        _require(
            self.l2_weight_threshold >= 0.0,
            "L2WeightEvict",
            f"l2_weight_threshold must be >= 0, got {self.l2_weight_threshold!r}",
        )


@dataclasses.dataclass(frozen=True)
class EmbeddingVariableOption:
    """The options of an embedding variable (a dynamic table), as DeepRec's.

    Attributes:
      capacity: rows of the dynamic table, fixed (JAX needs static shapes). Ids
        past it are refused a row and counted; an adaptive column serves them
        from their static bucket.
      init_option: `InitializerOption`.
      filter_option: `CounterFilter` or `CBFFilter`, or None.
      evict_option: `GlobalStepEvict` or `L2WeightEvict`, or None.
      l1_mode: FTRL's L1 on the variable's rows: "row" (DeepRec's group lasso,
        the default) or "coordinate" (TensorFlow's).
    """

    capacity: int = 2**16
    init_option: InitializerOption = InitializerOption()
    filter_option: CounterFilter | CBFFilter | None = None
    evict_option: GlobalStepEvict | L2WeightEvict | None = None
    l1_mode: Literal["row", "coordinate"] = "row"

    def __post_init__(self):
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
            ("filter_option", (CounterFilter, CBFFilter, type(None))),
            ("evict_option", (GlobalStepEvict, L2WeightEvict, type(None))),
        ):
            _require(
                isinstance(getattr(self, field), kinds),
                "EmbeddingVariableOption",
                f"{field} must be one of {[k.__name__ for k in kinds]}, got "
                f"{type(getattr(self, field)).__name__}",
            )
