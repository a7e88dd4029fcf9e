"""What the Flax faces (`nn`, linen; `nnx`) share: their input checks, the
embeddings of each column by name, and a short batch padded to a fixed size.

The input layer concatenates the columns in the order of their names
(`feature_column.ordered`, TensorFlow's `input_layer` rule), not in the order
they were given: `by_name` takes the concatenation apart by name, so that no
model splits it by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import feature_column as fc
from adaptive_jax.column import adaptive


def check_features(features: Any, columns: Sequence[fc.EmbeddingColumn]) -> None:
    """Raises a ValueError naming the column whose prepared ids are missing."""
    if not isinstance(features, Mapping):
        raise ValueError(
            f"Embed takes a dict of prepared features, got {type(features).__name__}"
        )
    for column in columns:
        key = column.categorical_column.key
        if not isinstance(features.get(column.name), adaptive.ColumnIds):
            raise ValueError(
                f"Embed: column '{key}': feature '{column.name}' is missing from "
                f"the prepared features (they have {sorted(features)}); prepare "
                "the batch on the host with feature_column.prepare(features, columns)"
            )


def check_labels(inputs: Any, labels: Any) -> None:
    """Raises a ValueError naming a feature whose batch size the labels miss."""
    leaves = jax.tree_util.tree_flatten_with_path(
        inputs, is_leaf=lambda x: isinstance(x, adaptive.ColumnIds)
    )[0]
    for path, leaf in leaves:
        if not isinstance(leaf, adaptive.ColumnIds):
            continue
        size = leaf.ids.batch_size
        for label in jax.tree.leaves(labels):
            if jnp.ndim(label) == 0 or jnp.shape(label)[0] != size:
                raise ValueError(
                    f"labels have shape {jnp.shape(label)}, but feature "
                    f"'{jax.tree_util.keystr(path, simple=True)}' has a batch of "
                    f"{size} examples: give one label per example"
                )


def by_name(
    embeddings: jax.Array, columns: Sequence[fc.EmbeddingColumn]
) -> dict[str, jax.Array]:
    """The input layer's output as `{column name: [batch, width]}`.

    Raises:
      ValueError: an output whose width is not the columns' total.
    """
    columns = fc.ordered(columns)
    total = sum(column.width for column in columns)
    if embeddings.shape[-1] != total:
        raise ValueError(
            f"embeddings have {embeddings.shape[-1]} values per example, the "
            f"columns {[c.name for c in columns]} {total}"
        )
    out, start = {}, 0
    for column in columns:
        out[column.name] = embeddings[:, start : start + column.width]
        start += column.width
    return out


def _missing_value(array: np.ndarray, key: str) -> Any:
    if array.dtype.kind in "iu":
        return -1
    if array.dtype.kind in "USO":
        return b"" if array.dtype.kind == "S" else ""
    raise ValueError(
        f"pad_batch: feature '{key}' has dtype {array.dtype}; it pads dense "
        'int or string ids (-1 or "" missing), as feature_column.prepare reads them'
    )


def pad_batch(
    features: Mapping[str, Any], labels: Any, batch_size: int
) -> tuple[dict[str, np.ndarray], Any, np.ndarray]:
    """A short batch padded to `batch_size` examples, and the examples' weights.

    The padding examples have every id missing (-1, or "" for strings) and
    label 0; `weights` is 1.0 for a real example and 0.0 for padding. Padding
    every batch to one size (or a few) keeps a jitted step from compiling
    again for a short last batch; a loss that weights each example by
    `weights` then trains on the real examples only. Routing masks
    (`adaptive_mask_tensors`) stay as they are: a missing id has no entry.

    Args:
      features: raw dense features, `{key: [batch] or [batch, width]}` ints or
        strings, before `feature_column.prepare`.
      labels: a pytree of `[batch, ...]` arrays.
      batch_size: the size to pad to.

    Returns:
      `(features, labels, weights)`: numpy arrays of `batch_size` rows,
      `weights` `[batch_size] float32`.

    Raises:
      ValueError: a batch larger than `batch_size`, features of different
        batch sizes, or a feature that is not dense ids, naming it.

    Example:
      >>> import numpy as np
      >>> from adaptive_jax import nnx as ajnnx
      >>> features, labels, weights = ajnnx.pad_batch(
      ...     {"user": np.array(["a", "b"]), "item": np.array([[3, 4], [5, -1]])},
      ...     np.array([1.0, 0.0]), 4)
      >>> features["user"].tolist(), features["item"][:, 0].tolist()
      (['a', 'b', '', ''], [3, 5, -1, -1])
      >>> labels.tolist(), weights.tolist()
      ([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0])
    """
    arrays = {key: np.asarray(value) for key, value in features.items()}
    sizes = {key: array.shape[0] for key, array in arrays.items() if array.ndim}
    if len(set(sizes.values())) != 1 or len(sizes) != len(arrays):
        raise ValueError(
            f"pad_batch: the features have batch sizes {sizes}; give each one "
            "row per example"
        )
    size = next(iter(sizes.values()))
    if size > batch_size:
        raise ValueError(
            f"pad_batch: the batch has {size} examples, more than batch_size "
            f"{batch_size}"
        )

    def padded(array: np.ndarray, fill: Any) -> np.ndarray:
        rest = np.full((batch_size - size, *array.shape[1:]), fill, array.dtype)
        return np.concatenate([array, rest])

    out = {key: padded(a, _missing_value(a, key)) for key, a in arrays.items()}
    labels = jax.tree.map(lambda y: padded(np.asarray(y), 0), labels)
    weights = (np.arange(batch_size) < size).astype(np.float32)
    return out, labels, weights
