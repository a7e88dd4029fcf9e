"""FTRL-Proximal as TensorFlow computes it, for dense parameters and table rows.

The formula (`Ftrl.update`) is written once, on rows: the dense optax transform
`ftrl` applies it to every coordinate, the sparse update to the gathered rows of
a table. Per-coordinate L1 is TensorFlow's (`ApplyFtrlV2`); per-row L1 is
DeepRec's variant for embedding-variable rows (group lasso: a row is zero as a
whole until the L2 norm of its `linear` passes l1). `beta` is Keras' (`Ftrl`).

References: McMahan et al., "Ad Click Prediction: a View from the Trenches", 2013;
TensorFlow `training_ops.cc` (`ApplyFtrlV2`); DeepRec's EV FTRL.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptive_jax.optim import _dense, _hyper

L1Mode = Literal["coordinate", "row"]


class FtrlSlots(NamedTuple):
    """FTRL's two slots, shaped like the parameters (or table rows) they serve."""

    accumulator: Any  # n: initial_accumulator_value + sum of squared gradients
    linear: Any  # z: the weight is a closed-form function of (z, n)


@dataclasses.dataclass(frozen=True)
class Ftrl:
    """FTRL hyperparameters, with TensorFlow's defaults; hashable, so static.

    Attributes:
      learning_rate: a float > 0, or an optax schedule of the step count
        (whose values must stay > 0).
      learning_rate_power: <= 0; -0.5 is AdaGrad-style decay, 0 a fixed rate.
      initial_accumulator_value: >= 0, where each accumulator starts.
      l1_regularization_strength: >= 0.
      l2_regularization_strength: >= 0, the stabilising L2 of the closed form.
      l2_shrinkage_regularization_strength: >= 0, an L2 penalty on the loss.
      beta: >= 0, as in Keras' `Ftrl` (adds `beta / (2 * lr)` to the L2).
      Each number finite, as TensorFlow's checks require (`_hyper`).
      l1_mode: "coordinate" (TensorFlow) or "row" (DeepRec's group lasso over
        the last axis, for embedding rows).
    """

    learning_rate: float | optax.Schedule
    learning_rate_power: float = -0.5
    initial_accumulator_value: float = 0.1
    l1_regularization_strength: float = 0.0
    l2_regularization_strength: float = 0.0
    l2_shrinkage_regularization_strength: float = 0.0
    beta: float = 0.0
    l1_mode: L1Mode = "coordinate"

    def __post_init__(self):
        _hyper.check_learning_rate("ftrl", self.learning_rate)
        _hyper.require_non_positive(
            "ftrl", learning_rate_power=self.learning_rate_power
        )
        _hyper.require_non_negative(
            "ftrl",
            initial_accumulator_value=self.initial_accumulator_value,
            l1_regularization_strength=self.l1_regularization_strength,
            l2_regularization_strength=self.l2_regularization_strength,
            l2_shrinkage_regularization_strength=self.l2_shrinkage_regularization_strength,
            beta=self.beta,
        )
        if self.l1_mode not in ("coordinate", "row"):
            raise ValueError(
                f"ftrl: l1_mode must be 'coordinate' or 'row', got {self.l1_mode!r}"
            )

    def learning_rate_at(self, count: jax.Array | int) -> jax.Array:
        return _hyper.learning_rate_at(self.learning_rate, count)

    def init_slots(self, like: jax.Array) -> FtrlSlots:
        """Fresh slots shaped like `like`: accumulators at their initial value."""
        accumulator = jnp.full_like(like, self.initial_accumulator_value)
        return FtrlSlots(accumulator, jnp.zeros_like(like))

    def _decay(self, accumulator: jax.Array) -> jax.Array:
        """`n ** -learning_rate_power`, with TensorFlow's sqrt for -0.5."""
        if self.learning_rate_power == -0.5:
            return jnp.sqrt(accumulator)
        return jnp.power(accumulator, -self.learning_rate_power)

    def _quadratic(self, accumulator: jax.Array, rate: jax.Array) -> jax.Array:
        """The denominator of the closed form: `n^-p / lr + 2 * l2` (+ Keras' beta)."""
        l2 = self.l2_regularization_strength + self.beta / (2.0 * rate)
        return self._decay(accumulator) / rate + 2.0 * l2

    def _weight(self, linear: jax.Array, quadratic: jax.Array) -> jax.Array:
        """The closed form `w(z, n)`, per coordinate or per row."""
        l1 = self.l1_regularization_strength
        if self.l1_mode == "coordinate":
            shrunk = (jnp.sign(linear) * l1 - linear) / quadratic
            return jnp.where(jnp.abs(linear) > l1, shrunk, jnp.zeros_like(linear))
        norm = jnp.linalg.norm(linear, axis=-1, keepdims=True)
        scale = (l1 - norm) / (quadratic * jnp.where(norm > 0, norm, 1.0))
        return jnp.where(norm > l1, scale * linear, jnp.zeros_like(linear))

    def weight_of(self, slots: FtrlSlots, count: jax.Array | int = 0) -> jax.Array:
        """The weight that FTRL's closed form gives for `slots`: `w(z, n)`."""
        rate = self.learning_rate_at(count)
        return self._weight(slots.linear, self._quadratic(slots.accumulator, rate))

    def update(
        self,
        value: jax.Array,
        slots: FtrlSlots,
        grad: jax.Array,
        count: jax.Array | int = 0,
    ) -> tuple[jax.Array, FtrlSlots]:
        """One FTRL step on rows: (value, slots, gradient) -> new (value, slots).

        ```
        g' = g + 2 * l2_shrinkage * w
        n' = n + g**2
        z' = z + g' - (n'^-p - n^-p) / lr * w
        w' = (sign(z') * l1 - z') / (n'^-p / lr + 2 * l2)   if |z'| > l1, else 0
        ```
        With `l1_mode="row"`, |z'| is the L2 norm of the row and
        `w' = (l1 - |z'|) / ((n'^-p / lr + 2 * l2) * |z'|) * z'`.

        Args:
          value: weights, any shape (rows on the last axis for the row mode).
          slots: `FtrlSlots` of the same shape.
          grad: gradient of the same shape. A NaN makes the slots NaN and the
            weight 0 (NaN > l1 is false), as in TensorFlow; the sparse update
            of a table skips such rows instead (`optim.sparse_update`).
          count: step count, for a learning-rate schedule.
        """
        rate = self.learning_rate_at(count)
        accumulator = slots.accumulator + grad * grad
        shrunk_grad = grad + 2.0 * self.l2_shrinkage_regularization_strength * value
        sigma = (self._decay(accumulator) - self._decay(slots.accumulator)) / rate
        linear = slots.linear + shrunk_grad - sigma * value
        weight = self._weight(linear, self._quadratic(accumulator, rate))
        return weight.astype(value.dtype), FtrlSlots(accumulator, linear)

    def linear_for(
        self, weight: jax.Array, accumulator: jax.Array, count: jax.Array | int = 0
    ) -> jax.Array:
        """The `linear` for which the closed form gives back `weight`, given `n`.

        Per coordinate: `z = -(w * q + sign(w) * l1)`; per row:
        `z = -(w * q) * (1 + l1 / |w * q|)`, with `q = n^-p / lr + 2 * l2`;
        0 where the weight is 0.
        """
        scaled = weight * self._quadratic(accumulator, self.learning_rate_at(count))
        l1 = self.l1_regularization_strength
        if self.l1_mode == "coordinate":
            return -(scaled + jnp.sign(weight) * l1)
        norm = jnp.linalg.norm(scaled, axis=-1, keepdims=True)
        return -scaled * (1.0 + l1 / jnp.where(norm > 0, norm, 1.0))

    def warm_slots(self, weight: jax.Array, count: jax.Array | int = 0) -> FtrlSlots:
        """Fresh slots whose closed form reproduces `weight`: a fresh accumulator,
        and the solved `linear`. For a row that starts from a copied value."""
        accumulator = jnp.full_like(weight, self.initial_accumulator_value)
        return FtrlSlots(accumulator, self.linear_for(weight, accumulator, count))


def ftrl(
    learning_rate: float | optax.Schedule,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1_regularization_strength: float = 0.0,
    l2_regularization_strength: float = 0.0,
    l2_shrinkage_regularization_strength: float = 0.0,
    beta: float = 0.0,
) -> optax.GradientTransformation:
    """FTRL-Proximal as an optax transformation, equal to TensorFlow's.

    Element for element TensorFlow's `ApplyFtrlV2` (`tf.keras.optimizers.Ftrl`
    with `beta`). FTRL derives the weight from its slots, so `update` needs the
    parameters; it returns `new_params - params`, so that `optax.apply_updates`
    works and the transform chains with others. The state is an
    `OptimizerState(count, FtrlSlots(accumulator, linear))`, each slot a tree
    like the parameters.

    Args:
      learning_rate: a float > 0, or an optax schedule of the step count.
      learning_rate_power: <= 0; -0.5 is AdaGrad-style decay, 0 a fixed rate.
      initial_accumulator_value: >= 0, where each accumulator starts.
      l1_regularization_strength: >= 0, per coordinate.
      l2_regularization_strength: >= 0, the stabilising L2 of the closed form.
      l2_shrinkage_regularization_strength: >= 0, an L2 penalty on the loss.
      beta: >= 0, as in Keras' `Ftrl`.

    Raises:
      ValueError: at construction, naming the argument: a learning rate that is
        not > 0, a negative strength or initial accumulator,
        learning_rate_power > 0, or a number that is not finite (TensorFlow's
        constraints).

    A NaN or inf gradient gives TensorFlow's result here (NaN slots, a weight
    of 0); the sparse update of an embedding table skips such rows instead.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = ftrl(0.1, l1_regularization_strength=0.01)
      >>> params = {"w": jnp.ones(2)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.array([0.5, -0.5])}, state, params)
      >>> [round(w, 4) for w in optax.apply_updates(params, updates)["w"].tolist()]
      [0.3793, 0.5483]
    """
    spec = Ftrl(
        learning_rate,
        learning_rate_power,
        initial_accumulator_value,
        l1_regularization_strength,
        l2_regularization_strength,
        l2_shrinkage_regularization_strength,
        beta,
    )
    return _dense.transform(spec)
