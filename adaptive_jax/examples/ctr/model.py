"""The click model of the CTR example: DeepFM over embedding fields and counts.

Each of the 26 categorical columns gives a field embedding (looked up outside
this module, by `feature_column.input_layer`); the 13 integer counts, after
`data.log_transform`, form one more field through a dense projection. The
logit is the sum of three parts, as in DeepFM (Guo et al., 2017):

- first order: a linear layer over the embeddings and the counts;
- second order: the factorisation machine's pairwise dot products of the
  fields, `0.5 * sum_d [(sum_f v_fd)**2 - sum_f v_fd**2]`;
- deep: an MLP over the same inputs.

The embeddings are an input, not a parameter, so that the tables stay outside
the differentiated function and get sparse updates from the gradient of this
input (as jax-tpu-embedding does).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class DeepFM(nn.Module):
    """DeepFM logits from field embeddings and log-transformed counts.

    Attributes:
      dimension: the embedding dimension of every field.
      hidden: widths of the MLP's hidden layers.
    """

    dimension: int
    hidden: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, embeddings: jax.Array, counts: jax.Array) -> jax.Array:
        """Logits of the examples.

        Args:
          embeddings: `[batch, fields * dimension] float32`, the fields side by
            side (the input layer's output).
          counts: `[batch, 13] float32`, the integer features, log-transformed.

        Returns:
          `[batch] float32` logits.
        """
        batch = embeddings.shape[0]
        fields = embeddings.reshape(batch, -1, self.dimension)
        counts_field = nn.Dense(self.dimension, name="counts_field")(counts)
        fields = jnp.concatenate([fields, counts_field[:, None, :]], axis=1)
        pairwise = 0.5 * jnp.sum(
            jnp.square(jnp.sum(fields, axis=1)) - jnp.sum(jnp.square(fields), axis=1),
            axis=1,
        )
        inputs = jnp.concatenate([embeddings, counts], axis=1)
        first_order = nn.Dense(1, name="first_order")(inputs)[:, 0]
        deep = inputs
        for width in self.hidden:
            deep = nn.relu(nn.Dense(width)(deep))
        deep = nn.Dense(1, name="deep_out")(deep)[:, 0]
        return first_order + pairwise + deep


def summed_log_loss(
    logits: jax.Array, labels: jax.Array, weights: jax.Array
) -> jax.Array:
    """The binary cross-entropy of logits, computed stably, summed with
    per-example `weights` (0 drops an example)."""
    return jnp.sum(weights * (jnp.logaddexp(0.0, logits) - labels * logits))
