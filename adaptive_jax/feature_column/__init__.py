"""The TensorFlow / DeepRec face: feature columns and a functional input layer.

Columns, with DeepRec's names (frozen dataclasses: hashable, so static under jit):

- `categorical_column_with_adaptive_embedding(key, hash_bucket_size, ...)`: a
  static hash-bucket table for rare ids and a dynamic table for frequent ones;
- `categorical_column_with_embedding(key, ...)`: a plain dynamic table;
- `categorical_column_with_hash_bucket(key, hash_bucket_size, ...)`: a plain
  static table;
- `embedding_column(categorical_column, dimension, combiner, initializer)`.

It may import every layer below it (`ids`, `table`, `optim`, `column`); the
modules: `_specs` (the columns), `_prepare` (raw features to ids, on the
host), `_layer` (state, lookup, update), `_upkeep` (eviction, statistics),
`_checks` (a state against its columns, a gradient against its residuals:
the errors at this face's edges), `_sizing` (columns sized from a byte
budget and a survey of the data: `size_columns`), `_footprint` (their bytes
in training and export, from `init_state`'s shapes), `_find` (the tables
wherever a Flax model holds them).

The input layer is functional, state in and state out, and split so that the
step can be jitted: `prepare` turns raw features into `ColumnIds` on the host
(TensorFlow's buckets, DeepRec's keys, the masks, padding); `input_layer` looks
up and combines (inserting and migrating dynamic-routed ids); `apply_gradients`
feeds the gradient of its output back to the tables as sparse updates. Columns
are taken in the order of their names, as `tf.feature_column.input_layer` does.

Example (the seed program: `examples/seed_example.py`):
  >>> import jax, numpy as np
  >>> from adaptive_jax import feature_column as fc, initializers, optim, sparse
  >>> column = fc.categorical_column_with_adaptive_embedding(
  ...     "col_emb", hash_bucket_size=100, dtype="int64")
  >>> W = fc.embedding_column(column, dimension=3, initializer=initializers.ones())
  >>> opt = optim.ftrl(0.1, l1_regularization_strength=2.0)
  >>> state = fc.init_state([W], opt, jax.random.key(0))
  >>> features = {"col_emb": sparse.from_ragged([[1], [2]])}
  >>> emb, state, residuals = fc.input_layer(
  ...     features, [W], state, optimizer=opt,
  ...     adaptive_mask_tensors={"col_emb": np.array([1, 0])})
  >>> emb.shape
  (2, 3)
  >>> state = fc.apply_gradients(state, residuals, 2 * jax.numpy.ones((2, 3)), [W], opt)
"""

from adaptive_jax.feature_column._checks import check_state as check_state
from adaptive_jax.feature_column._footprint import (
    export_bytes_bound as export_bytes_bound,
)
from adaptive_jax.feature_column._footprint import state_bytes as state_bytes
from adaptive_jax.feature_column._layer import apply_gradients as apply_gradients
from adaptive_jax.feature_column._layer import init_state as init_state
from adaptive_jax.feature_column._layer import input_layer as input_layer
from adaptive_jax.feature_column._prepare import prepare as prepare
from adaptive_jax.feature_column._sizing import BUDGETS as BUDGETS
from adaptive_jax.feature_column._sizing import ColumnSize as ColumnSize
from adaptive_jax.feature_column._sizing import Sizing as Sizing
from adaptive_jax.feature_column._sizing import size_columns as size_columns
from adaptive_jax.feature_column._specs import DEFAULT_EV_OPTION as DEFAULT_EV_OPTION
from adaptive_jax.feature_column._specs import DTYPES as DTYPES
from adaptive_jax.feature_column._specs import CategoricalColumn as CategoricalColumn
from adaptive_jax.feature_column._specs import EmbeddingColumn as EmbeddingColumn
from adaptive_jax.feature_column._specs import (
    categorical_column_with_adaptive_embedding as categorical_column_with_adaptive_embedding,  # noqa: E501
)
from adaptive_jax.feature_column._specs import (
    categorical_column_with_embedding as categorical_column_with_embedding,
)
from adaptive_jax.feature_column._specs import (
    categorical_column_with_hash_bucket as categorical_column_with_hash_bucket,
)
from adaptive_jax.feature_column._specs import embedding_column as embedding_column
from adaptive_jax.feature_column._specs import ordered as ordered
from adaptive_jax.feature_column._specs import stacked_column as stacked_column
from adaptive_jax.feature_column._upkeep import counts as counts
from adaptive_jax.feature_column._upkeep import evict as evict
from adaptive_jax.feature_column._upkeep import maybe_evict as maybe_evict
from adaptive_jax.feature_column._upkeep import summary as summary

__all__ = (
    "BUDGETS",
    "CategoricalColumn",
    "ColumnSize",
    "DEFAULT_EV_OPTION",
    "DTYPES",
    "EmbeddingColumn",
    "Sizing",
    "apply_gradients",
    "categorical_column_with_adaptive_embedding",
    "categorical_column_with_embedding",
    "categorical_column_with_hash_bucket",
    "check_state",
    "counts",
    "embedding_column",
    "evict",
    "export_bytes_bound",
    "init_state",
    "input_layer",
    "maybe_evict",
    "ordered",
    "prepare",
    "size_columns",
    "stacked_column",
    "state_bytes",
    "summary",
)
