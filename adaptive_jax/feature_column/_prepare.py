"""Raw features to each column's `ColumnIds`, on the host, before a jitted step.

TensorFlow's buckets, DeepRec's keys, the routing masks and the padding are
computed here, outside jit (`ids._host_ids`; `column.stacking` for a stacked
column), so that the jitted lookup gets arrays of fixed shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adaptive_jax.column import adaptive, stacking
from adaptive_jax.feature_column._specs import (
    CategoricalColumn,
    EmbeddingColumn,
    ordered,
)
from adaptive_jax.ids import _columns, _host_ids


def _routing_mask(categorical: CategoricalColumn, masks: Mapping[str, Any]) -> Any:
    """The routing mask of an adaptive column as given; None when its admission
    filter routes."""
    key = categorical.key
    if key in masks:
        return masks[key]
    if categorical.ev_option.filter_option is None:
        raise ValueError(
            f"column '{key}' is adaptive: give adaptive_mask_tensors['{key}'] (one "
            "0/1 per id) or an admission policy (ev_option.filter_option)"
        )
    return None


def prepare(
    features: Mapping[str, Any],
    feature_columns: Sequence[EmbeddingColumn],
    *,
    adaptive_mask_tensors: Mapping[str, Any] | None = None,
    size: int | None = None,
    int_buckets: str = "device",
) -> dict[str, adaptive.ColumnIds]:
    """Turns raw features into the `ColumnIds` of each column, on the host.

    Dense numpy features of one id per example (`[batch]` or `[batch, 1]`)
    without masks take a fast path (`ids._dense`): all of a stacked column's
    members, and all single-feature columns of one kind, in whole-array
    passes.

    Args:
      features: a dict from feature key to the feature's ids: `SparseIds`, a
        dense padded array (-1 or "" missing), ragged lists, or an object with
        `indices`, `values` and `dense_shape` (a `tf.SparseTensor`). A stacked
        column reads one feature per member.
      feature_columns: the embedding columns.
      adaptive_mask_tensors: a dict from feature key to a per-id 0/1 mask, one
        value per sparse id, in the order of the sparse values.
      size: a fixed padded number of ids per column (a stacked column's: of
        all its members); None for powers of two.
      int_buckets: where TensorFlow's static buckets of int ids are computed:
        "device" (the default) leaves them to the jitted step, which hashes
        each key's decimal string there (`ColumnIds.buckets` is None; on the
        host an int id is then only copied), "host" computes them here. Both
        give the same buckets, bit for bit; string ids' buckets are always
        computed here.

    Raises:
      ValueError: a missing feature, a mask of the wrong length, a mask for a
        column that is not adaptive, ids of the wrong kind, or batches of
        different sizes; each names the column.
    """
    _columns.check_int_buckets(int_buckets)
    columns = ordered(feature_columns)
    masks = dict(adaptive_mask_tensors or {})
    adaptive_keys = {
        k
        for c in columns
        if c.categorical_column.adaptive
        for k in c.categorical_column.feature_keys
    }
    _host_ids.check_masks(masks, adaptive_keys, "adaptive_mask_tensors")
    prepared, batch_sizes, singles = {}, set(), {}
    for column in columns:
        categorical = column.categorical_column
        if categorical.members is not None:
            prepared[column.name], examples = _prepare_stacked(
                features, categorical, masks, size, int_buckets
            )
            batch_sizes.add(examples)
            continue
        _host_ids.check_present(features, categorical.key)
        mask = _routing_mask(categorical, masks) if categorical.adaptive else None
        singles[column.name] = _columns.Single(
            categorical.key, categorical.dtype, categorical.hash_bucket_size, mask
        )
    together, examples = _columns.single_column_ids(
        features, singles, size=size, int_buckets=int_buckets
    )
    prepared.update(together)
    _host_ids.one_batch_size(batch_sizes | examples)
    return {c.name: prepared[c.name] for c in columns}


def _prepare_stacked(
    features: Mapping[str, Any],
    categorical: CategoricalColumn,
    masks: Mapping[str, Any],
    size: int | None,
    int_buckets: str,
) -> tuple[adaptive.ColumnIds, int]:
    """A stacked column's `ColumnIds` and its number of examples."""
    member_masks = {k: masks[k] for k in categorical.feature_keys if k in masks}
    if (
        categorical.adaptive
        and not member_masks
        and categorical.ev_option.filter_option is None
    ):
        raise ValueError(
            f"column '{categorical.key}' is adaptive: give adaptive_mask_tensors for "
            f"its members {list(categorical.feature_keys)} (one 0/1 per id) or an "
            "admission policy (ev_option.filter_option)"
        )
    return stacking.column_ids(
        features,
        key=categorical.key,
        dtype=categorical.dtype,
        members=categorical.members,
        masks=member_masks or None,
        size=size,
        int_buckets=int_buckets,
    )
