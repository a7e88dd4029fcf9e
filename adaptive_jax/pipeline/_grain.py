"""`feature_column.prepare` as a Grain transform, to prepare batches in
Grain's workers (threads with `ReadOptions`, processes with `mp_prefetch`).

A prepared batch holds numpy arrays only, so a worker process needs no
accelerator and sends it back cheaply; the step moves it to the device.
Grain pickles the transform into its worker processes with cloudpickle, so
columns with closures for initializers travel too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    import grain
except ImportError as error:  # pragma: no cover: the message is the point
    raise ImportError(
        "adaptive_jax.pipeline.PrepareBatch needs Grain: pip install "
        "'adaptive_jax[grain]'"
    ) from error

from adaptive_jax import feature_column as fc


class PrepareBatch(grain.transforms.Map):
    """Turns a batch of raw features into `{"ids": prepared, ...the rest}`.

    The element is a dict (Grain's `batch` stacks the records' dicts): the
    entries that are the columns' features go through `feature_column.prepare`
    and come out as `"ids"`, the `ColumnIds` of each column; the others
    (labels, dense features) pass through unchanged.

    Args:
      feature_columns: the embedding columns.
      size: the padded number of ids per column, as `prepare`'s (fix it, so
        that a short last batch does not compile a new step).

    Example:
      >>> import numpy as np
      >>> import adaptive_jax as aj
      >>> admit = aj.EmbeddingVariableOption(filter_option=aj.CounterFilter(2))
      >>> col = fc.embedding_column(fc.categorical_column_with_adaptive_embedding(
      ...     "item", 16, dtype="int64", ev_option=admit), 4)
      >>> out = PrepareBatch([col]).map({"item": np.array([3, 5]), "label": 1})
      >>> sorted(out), out["ids"]["item_embedding"].ids.size
      (['ids', 'label'], 8)
    """

    def __init__(
        self, feature_columns: Sequence[fc.EmbeddingColumn], *, size: int | None = None
    ):
        self._columns = tuple(feature_columns)
        self._keys = {
            key for c in self._columns for key in c.categorical_column.feature_keys
        }
        self._size = size

    def map(self, element: Mapping[str, Any]) -> dict[str, Any]:
        features = {k: v for k, v in element.items() if k in self._keys}
        rest = {k: v for k, v in element.items() if k not in self._keys}
        return {"ids": fc.prepare(features, self._columns, size=self._size), **rest}
