"""Checks and schedules shared by the optimizer specs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def require_non_negative(optimizer: str, **values: float) -> None:
    """Raises a ValueError naming the first hyperparameter below 0 (or NaN)."""
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{optimizer}: {name} must be >= 0, got {value}")


def check_learning_rate(optimizer: str, learning_rate: float | optax.Schedule) -> None:
    if not callable(learning_rate):
        require_non_negative(optimizer, learning_rate=learning_rate)


def learning_rate_at(
    learning_rate: float | optax.Schedule, count: jax.Array | int
) -> jax.Array:
    """The learning rate of step `count`: a constant, or a schedule's value."""
    value = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, jnp.float32)
