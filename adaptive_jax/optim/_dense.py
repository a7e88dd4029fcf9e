"""An optax transformation from a row update: the dense form of an optimizer.

An optimizer here is a spec with `init_slots(like)` and
`update(value, slots, grad, count) -> (value, slots)`, written once on arrays.
`transform(spec)` applies it to every parameter, so the dense and the sparse form
(`_sparse`) compute the same numbers from the same formula.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class OptimizerState(NamedTuple):
    """State of a dense transform."""

    count: jax.Array  # [] int32, steps taken (saturating), for schedules
    slots: Any  # the spec's slots NamedTuple; each field a tree like the params


def transform(spec: Any) -> optax.GradientTransformation:
    """The optax transformation that applies `spec.update` to each parameter.

    `update` needs the parameters, since the new weight may depend on them in
    ways an increment cannot say (FTRL derives it from its slots); it returns
    `new_params - params`.
    """
    name = type(spec).__name__.lower()

    one_leaf = spec.init_slots(jnp.zeros([]))  # the slot structure of one parameter

    def init_fn(params: optax.Params) -> OptimizerState:
        per_leaf = jax.tree.map(spec.init_slots, params)
        slots = jax.tree.transpose(
            jax.tree.structure(params), jax.tree.structure(one_leaf), per_leaf
        )
        return OptimizerState(jnp.zeros([], jnp.int32), slots)

    def update_fn(
        updates: optax.Updates, state: OptimizerState, params: optax.Params = None
    ) -> tuple[optax.Updates, OptimizerState]:
        if params is None:
            raise ValueError(
                f"{name} needs the parameters to compute its update: call "
                "update(grads, state, params)"
            )
        slots_type = type(state.slots)
        stepped = jax.tree.map(
            lambda w, g, *s: spec.update(w, slots_type(*s), g, state.count),
            params,
            updates,
            *state.slots,
        )
        new_params, new_slots = jax.tree.transpose(
            jax.tree.structure(params), jax.tree.structure((0, one_leaf)), stepped
        )
        increments = jax.tree.map(jnp.subtract, new_params, params)
        return increments, OptimizerState(optax.safe_increment(state.count), new_slots)

    init_fn.spec = spec  # so that `spec_of` finds the row formula behind it
    return optax.GradientTransformation(init_fn, update_fn)


def spec_of(optimizer: Any) -> Any:
    """The spec (e.g. `Ftrl`) of an optimizer: a spec itself, or a transformation
    made by `ftrl` or `adagrad`, for the sparse updates of embedding tables.

    Raises:
      ValueError: another optax transformation, whose row formula is unknown.
    """
    if hasattr(optimizer, "update") and hasattr(optimizer, "init_slots"):
        return optimizer
    spec = getattr(getattr(optimizer, "init", None), "spec", None)
    if spec is None:
        raise ValueError(
            "embedding tables need an optimizer of adaptive_jax.optim (ftrl, adagrad, "
            f"or an Ftrl / Adagrad spec), got {type(optimizer).__name__}"
        )
    return spec
