"""Adagrad as TensorFlow computes it, for dense parameters and table rows.

`ApplyAdagrad` (TensorFlow 1, DeepRec): `n += g**2; w -= lr * g / sqrt(n)`, the
accumulator starting at 0.1. With `epsilon > 0`, `w -= lr * g / (sqrt(n) + eps)`:
`ApplyAdagradV2`, as `tf.keras.optimizers.Adagrad` (whose default epsilon is
1e-7). The formula is written once, on rows; `adagrad` applies it densely,
`apply_sparse` to the gathered rows of a table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptive_jax.optim import _dense, _hyper


class AdagradSlots(NamedTuple):
    """Adagrad's slot, shaped like the parameters (or table rows) it serves."""

    accumulator: Any  # n: initial_accumulator_value + sum of squared gradients


@dataclasses.dataclass(frozen=True)
class Adagrad:
    """Adagrad hyperparameters, with TensorFlow 1's defaults; hashable, so static.

    Attributes:
      learning_rate: a float > 0, or an optax schedule of the step count.
      initial_accumulator_value: where each accumulator starts: > 0 with
        epsilon 0 (TensorFlow 1's `AdagradOptimizer` requires it), >= 0 with
        an epsilon (Keras').
      epsilon: >= 0, added to `sqrt(n)`; 0 is `ApplyAdagrad`, Keras uses 1e-7.
      Each number finite.
    """

    learning_rate: float | optax.Schedule
    initial_accumulator_value: float = 0.1
    epsilon: float = 0.0

    def __post_init__(self):
        _hyper.check_learning_rate("adagrad", self.learning_rate)
        _hyper.require_non_negative("adagrad", epsilon=self.epsilon)
        # TensorFlow 1 (DeepRec) needs n > 0, or its first step divides by
        # sqrt(0); Keras' epsilon keeps the step finite, and takes n = 0.
        initial = {"initial_accumulator_value": self.initial_accumulator_value}
        if self.epsilon == 0.0:
            _hyper.require_positive("adagrad", **initial)
        else:
            _hyper.require_non_negative("adagrad", **initial)

    def init_slots(self, like: jax.Array) -> AdagradSlots:
        """Fresh slots shaped like `like`."""
        return AdagradSlots(jnp.full_like(like, self.initial_accumulator_value))

    def update(
        self,
        value: jax.Array,
        slots: AdagradSlots,
        grad: jax.Array,
        count: jax.Array | int = 0,
    ) -> tuple[jax.Array, AdagradSlots]:
        """One Adagrad step on rows: (value, slots, gradient) -> new (value, slots)."""
        rate = _hyper.learning_rate_at(self.learning_rate, count)
        accumulator = slots.accumulator + grad * grad
        if self.epsilon == 0.0:
            step = rate * grad * jax.lax.rsqrt(accumulator)
        else:
            step = rate * grad / (jnp.sqrt(accumulator) + self.epsilon)
        return (value - step).astype(value.dtype), AdagradSlots(accumulator)


def adagrad(
    learning_rate: float | optax.Schedule,
    initial_accumulator_value: float = 0.1,
    epsilon: float = 0.0,
) -> optax.GradientTransformation:
    """Adagrad as an optax transformation, equal to TensorFlow's.

    Args:
      learning_rate: a float > 0, or an optax schedule of the step count.
      initial_accumulator_value: > 0 (>= 0 with an epsilon).
      epsilon: >= 0; 0 gives TensorFlow 1's `ApplyAdagrad` (DeepRec's), 1e-7
        Keras' `Adagrad`.

    Raises:
      ValueError: at construction, naming the argument: a learning rate that is
        not > 0, an initial value that is not > 0 (< 0 with an epsilon), a
        negative epsilon, or a number that is not finite.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = adagrad(0.1)
      >>> params = jnp.zeros(2)
      >>> updates, _ = opt.update(jnp.array([1.0, -1.0]), opt.init(params), params)
      >>> [round(u, 4) for u in updates.tolist()]
      [-0.0953, 0.0953]
    """
    return _dense.transform(Adagrad(learning_rate, initial_accumulator_value, epsilon))
