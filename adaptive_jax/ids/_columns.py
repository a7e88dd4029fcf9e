"""Single-feature columns' ids on the host, the fast way where it applies.

Shared by `feature_column.prepare` and `serving.prepare`: the dense features
of one id per example without a routing mask go through `_dense` together,
in whole-array passes; any other feature through `_host_ids.feature_ids`,
one column at a time. The same ids either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from adaptive_jax.ids import _dense, _host_ids

INT_BUCKETS = ("device", "host")


class Single(NamedTuple):
    """A column of one feature: its key, dtype, static buckets, routing mask."""

    key: str
    dtype: str
    hash_bucket_size: int | None
    mask: Any = None


def check_int_buckets(int_buckets: object) -> None:
    """Raises unless `int_buckets` names where int ids' buckets are computed."""
    if int_buckets not in INT_BUCKETS:
        raise ValueError(
            f"int_buckets must be one of {INT_BUCKETS} (in the jitted step, or "
            f"here on the host), got {int_buckets!r}"
        )


def single_column_ids(
    features: Mapping[str, Any],
    columns: Mapping[str, Single],
    *,
    size: int | None,
    int_buckets: str,
) -> tuple[dict[str, _host_ids.ColumnIds], set[int]]:
    """Each column's `ColumnIds` by name, and the batch sizes seen. The
    features must be present (`_host_ids.check_present`)."""
    prepared, batch_sizes, dense = {}, set(), []
    for name, column in columns.items():
        if column.mask is None and _dense.accepts(features[column.key], column.dtype):
            dense.append(name)
            continue
        prepared[name], examples = _host_ids.feature_ids(
            features,
            key=column.key,
            dtype=column.dtype,
            hash_bucket_size=column.hash_bucket_size,
            mask=column.mask,
            size=size,
            int_buckets=int_buckets,
        )
        batch_sizes.add(examples)
    together, examples = _dense.single_columns(
        features,
        [columns[name][:3] for name in dense],
        size=size,
        int_buckets=int_buckets,
    )
    prepared.update(zip(dense, together, strict=True))
    return prepared, batch_sizes | examples
