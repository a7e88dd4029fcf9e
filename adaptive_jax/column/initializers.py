"""Initializers with TensorFlow's names, for embedding tables.

Each factory returns a JAX initializer, `init(key, shape, dtype) -> array`, as
`jax.nn.initializers` does: `ones()` is `tf.ones_initializer()`,
`truncated_normal(stddev=s)` is `tf.truncated_normal_initializer(stddev=s)` (a
normal cut at two standard deviations), and so on.

Example:
  >>> import jax
  >>> ones()(jax.random.key(0), (2, 3)).tolist()
  [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Initializer = jax.nn.initializers.Initializer


def ones() -> Initializer:
    return jax.nn.initializers.ones


def zeros() -> Initializer:
    return jax.nn.initializers.zeros


def constant(value: float) -> Initializer:
    return jax.nn.initializers.constant(value)


def truncated_normal(mean: float = 0.0, stddev: float = 1.0) -> Initializer:
    """A normal of `mean` and `stddev`, redrawn beyond two standard deviations."""

    def init(key, shape, dtype=jnp.float32):
        draw = jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
        return (mean + stddev * draw).astype(dtype)

    return init


def random_normal(mean: float = 0.0, stddev: float = 0.05) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return (mean + stddev * jax.random.normal(key, shape, dtype)).astype(dtype)

    return init


def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval, maxval)

    return init
