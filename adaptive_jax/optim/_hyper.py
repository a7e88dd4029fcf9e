"""Checks and schedules shared by the optimizer specs.

The checks are TensorFlow's, made at construction and naming the argument:
its kernels refuse a learning rate that is not positive (`ApplyFtrl`: "lr is
not a positive scalar"), negative L1, L2 or shrinkage strengths and a positive
`lr_power`; its optimizers refuse a negative initial accumulator (FTRL) or one
that is not positive (TensorFlow 1's `AdagradOptimizer`, DeepRec's; Keras'
`Adagrad`, with an epsilon, takes 0). Beyond TensorFlow, every number must be
finite: an infinite rate or strength makes the weights NaN or -inf on the first
step.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import optax


def _number(optimizer: str, name: str, value: object) -> float:
    """The value as a float; a ValueError naming it if it is not a finite real."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{optimizer}: {name} must be a number, got {type(value).__name__} "
            f"{value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{optimizer}: {name} must be finite, got {value}")
    return float(value)


def require_non_negative(optimizer: str, **values: object) -> None:
    """Raises a ValueError naming the first hyperparameter that is not a finite
    number >= 0."""
    for name, value in values.items():
        if not _number(optimizer, name, value) >= 0:
            raise ValueError(f"{optimizer}: {name} must be >= 0, got {value}")


def require_positive(optimizer: str, **values: object) -> None:
    """Raises a ValueError naming the first hyperparameter that is not a finite
    number > 0."""
    for name, value in values.items():
        if not _number(optimizer, name, value) > 0:
            raise ValueError(f"{optimizer}: {name} must be > 0, got {value}")


def require_non_positive(optimizer: str, **values: object) -> None:
    """Raises a ValueError naming the first hyperparameter that is not a finite
    number <= 0."""
    for name, value in values.items():
        if not _number(optimizer, name, value) <= 0:
            raise ValueError(f"{optimizer}: {name} must be <= 0, got {value}")


def check_learning_rate(optimizer: str, learning_rate: float | optax.Schedule) -> None:
    """A constant rate must be finite and > 0, as TensorFlow's kernels require
    (a schedule is the caller's: it must stay so at every step)."""
    if not callable(learning_rate):
        require_positive(optimizer, learning_rate=learning_rate)


def learning_rate_at(
    learning_rate: float | optax.Schedule, count: jax.Array | int
) -> jax.Array:
    """The learning rate of step `count`: a constant, or a schedule's value."""
    value = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, jnp.float32)
