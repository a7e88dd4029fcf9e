"""Serving: exports loaded with numpy only, looked up with a jitted read-only function.

An export (`adaptive_jax.export.export`) holds, per column, the static table and
the live rows of the dynamic table only: keys, values, and DeepRec's per-row
`freqs` and `versions`, without optimizer state or free rows. `save` and `load`
write and read it (and deltas) as `.npy` files and a manifest; `build` makes the
device arrays and the key index once; `lookup` gives the training lookup's
results for the same ids; `apply_delta` patches a serving copy. Nothing here
imports optax or orbax, so a serving process needs only jax, numpy and this
package.

Example:
  >>> import numpy as np
  >>> from adaptive_jax import serving
  >>> column = serving.ColumnExport(
  ...     key="user", dtype="int64", kind="adaptive", dimension=2, combiner="sum",
  ...     hash_bucket_size=3, no_permission_value=0.0, step=7,
  ...     static=np.zeros((3, 2), np.float32), default_values=None,
  ...     keys=np.array([42]), values=np.array([[1.0, 2.0]], np.float32),
  ...     freqs=np.array([5], np.int32), versions=np.array([6], np.int32))
  >>> built = serving.build(serving.Export({"user_embedding": column}))
  >>> serving.lookup(built, {"user": np.array([[42], [7]])}).tolist()
  [[1.0, 2.0], [0.0, 0.0]]
"""

from adaptive_jax.serving._files import ExportError as ExportError
from adaptive_jax.serving._files import load as load
from adaptive_jax.serving._files import save as save
from adaptive_jax.serving._format import ColumnDelta as ColumnDelta
from adaptive_jax.serving._format import ColumnExport as ColumnExport
from adaptive_jax.serving._format import Delta as Delta
from adaptive_jax.serving._format import Export as Export
from adaptive_jax.serving._format import apply_delta as apply_delta
from adaptive_jax.serving._lookup import ServingColumn as ServingColumn
from adaptive_jax.serving._lookup import Settings as Settings
from adaptive_jax.serving._lookup import build as build
from adaptive_jax.serving._lookup import lookup as lookup
from adaptive_jax.serving._lookup import prepare as prepare

__all__ = (
    "ColumnDelta",
    "ColumnExport",
    "Delta",
    "Export",
    "ExportError",
    "ServingColumn",
    "Settings",
    "apply_delta",
    "build",
    "load",
    "lookup",
    "prepare",
    "save",
)
