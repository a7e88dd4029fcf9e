"""Serving exports of a training state: the static table and the rows that earned a key.

`export(state, columns)` takes, per column, the static table and the live rows of
the dynamic table (keys, values, DeepRec's per-row `freqs` and `versions`),
without optimizer state or free rows, into a `serving.Export`:

- `drop_zero_rows` (default): rows that FTRL zeroed whole (DeepRec's row-wise
  L1) are left out; their ids then read what an id without a row reads, as an
  evicted id does in training: the static bucket in an adaptive column, the
  starting value or the no-permission value in a plain dynamic one;
- `top_k`: at most K rows per column, those of highest `score` ("freq": lookups,
  "version": most recent, "norm": L2 norm), ties to the smaller key;
- `value_dtype="bfloat16"`: every value array (static table, rows, default
  values) in bfloat16, half the bytes; serving computes in float32.

`delta(state, columns, previous)` is what changed since the export `previous`:
the rows looked up since its step or new to the selection, the static buckets
trained since, and tombstones for its keys that the selection lacks now
(evicted, zeroed, out of the top K). `serving.apply_delta(previous, delta)` is
then the export `export(state, columns)` would give, with the same options.

`size_report` gives the bytes of the training state, of the export, and of a
plain dynamic table with a row for every id seen (the statistics' distinct-id
estimate), in training and in export form.

Example:
  >>> import jax, numpy as np
  >>> from adaptive_jax import export, feature_column as fc, optim, serving
  >>> column = fc.categorical_column_with_adaptive_embedding(
  ...     "item", hash_bucket_size=10, dtype="int64")
  >>> W = fc.embedding_column(column, dimension=4)
  >>> opt = optim.ftrl(0.1)
  >>> state = fc.init_state([W], opt, jax.random.key(0))
  >>> features = {"item": np.array([[3], [5]])}
  >>> masks = {"item": np.array([1, 0])}
  >>> emb, state, _ = fc.input_layer(features, [W], state, optimizer=opt,
  ...                                adaptive_mask_tensors=masks)
  >>> exported = export.export(state, [W])
  >>> exported.columns["item_embedding"].keys.tolist()
  [3]
  >>> served = serving.lookup(serving.build(exported), features, masks=masks)
  >>> bool(np.array_equal(served, emb))
  True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from adaptive_jax import _numerics, feature_column, serving
from adaptive_jax.column import adaptive
from adaptive_jax.persist import _rows
from adaptive_jax.persist._sizes import size_report as size_report

SCORES = ("freq", "version", "norm")


def _checked(
    state: Mapping[str, adaptive.ColumnState],
    feature_columns: Sequence[feature_column.EmbeddingColumn],
    top_k: int | Mapping[str, int] | None,
    score: str,
    value_dtype: str,
) -> list[feature_column.EmbeddingColumn]:
    """The columns by name, checked against the state and the options."""
    columns = feature_column.ordered(feature_columns)
    names = [column.name for column in columns]
    if sorted(state) != names:
        raise ValueError(
            f"the state has columns {sorted(state)}, the feature columns {names}"
        )
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if value_dtype not in _rows.VALUE_DTYPES:
        raise ValueError(
            f"value_dtype must be one of {tuple(_rows.VALUE_DTYPES)}, got "
            f"{value_dtype!r}"
        )
    caps = top_k if isinstance(top_k, Mapping) else dict.fromkeys(names, top_k)
    for name, cap in caps.items():
        cap = _numerics.python_int(cap)
        if name not in names:
            raise ValueError(f"top_k['{name}']: no column is named '{name}'")
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or cap < 0
        ):
            raise ValueError(f"column '{name}': top_k must be an int >= 0, got {cap!r}")
    feature_column.check_state(state, columns)
    return columns


def _cap(top_k: int | Mapping[str, int] | None, name: str) -> int | None:
    return _numerics.python_int(
        top_k.get(name) if isinstance(top_k, Mapping) else top_k
    )


def _kind(column_state: adaptive.ColumnState) -> str:
    if column_state.static is None:
        return "dynamic"
    return "static" if column_state.dynamic is None else "adaptive"


def _column_export(
    column: feature_column.EmbeddingColumn,
    column_state: adaptive.ColumnState,
    *,
    drop_zero_rows: bool,
    top_k: int | None,
    score: str,
    value_dtype: str,
) -> serving.ColumnExport:
    categorical = column.categorical_column
    option = categorical.ev_option
    dtype = _rows.VALUE_DTYPES[value_dtype]
    static = defaults = None
    if column_state.static is not None:
        static = np.asarray(column_state.static.values).astype(dtype)
    admission = option is not None and option.filter_option is not None
    if (
        column_state.static is None
        and column_state.default_values is not None
        and not admission
    ):
        defaults = np.asarray(column_state.default_values).astype(dtype)
    row_fields = _rows.no_rows(column.dimension, value_dtype)
    if column_state.dynamic is not None:
        rows = _rows.rows_of(column_state.dynamic)
        chosen, keys = _rows.selected(
            rows,
            drop_zero_rows=drop_zero_rows,
            top_k=top_k,
            score=score,
        )
        row_fields = _rows.arrays(rows, chosen, keys, value_dtype)
    return serving.ColumnExport(
        key=categorical.key,
        dtype=categorical.dtype,
        kind=_kind(column_state),
        dimension=column.dimension,
        combiner=column.combiner,
        hash_bucket_size=categorical.hash_bucket_size,
        no_permission_value=(
            float(option.init_option.default_value_no_permission) if option else 0.0
        ),
        step=int(column_state.step),
        static=static,
        default_values=defaults,
        **row_fields,
        members=(
            None
            if categorical.members is None
            else tuple((m.key, m.hash_bucket_size) for m in categorical.members)
        ),
    )


def export(
    state: Mapping[str, adaptive.ColumnState],
    feature_columns: Sequence[feature_column.EmbeddingColumn],
    *,
    drop_zero_rows: bool = True,
    top_k: int | Mapping[str, int] | None = None,
    score: str = "freq",
    value_dtype: str = "float32",
) -> serving.Export:
    """The serving export of a training state (see the module's docstring).

    Args:
      state: `feature_column.init_state`'s dict, trained.
      feature_columns: the embedding columns of the state.
      drop_zero_rows: leave out rows that are zero whole.
      top_k: at most this many rows per column (an int for all, or a dict by
        column name); None for all.
      score: what `top_k` keeps the highest of: "freq", "version" or "norm".
      value_dtype: "float32" or "bfloat16".

    Raises:
      ValueError: columns that do not match the state, or a bad option; each
        names the column or option.
    """
    columns = _checked(state, feature_columns, top_k, score, value_dtype)
    return serving.Export(
        {
            column.name: _column_export(
                column,
                state[column.name],
                drop_zero_rows=drop_zero_rows,
                top_k=_cap(top_k, column.name),
                score=score,
                value_dtype=value_dtype,
            )
            for column in columns
        }
    )


def _column_delta(
    column_state: adaptive.ColumnState,
    previous: serving.ColumnExport,
    *,
    drop_zero_rows: bool,
    top_k: int | None,
    score: str,
    value_dtype: str,
) -> serving.ColumnDelta:
    since = previous.step
    dtype = _rows.VALUE_DTYPES[value_dtype]
    dimension = previous.dimension
    buckets = np.zeros(0, np.int32)
    bucket_values = np.zeros((0, dimension), dtype)
    if column_state.static is not None:
        static = column_state.static
        buckets = np.flatnonzero(np.asarray(static.last_step) >= since)
        buckets = buckets.astype(np.int32)
        bucket_values = np.asarray(static.values)[buckets].astype(dtype)
    removed = np.zeros(0, np.int64)
    row_fields = _rows.no_rows(dimension, value_dtype)
    if column_state.dynamic is not None:
        rows = _rows.rows_of(column_state.dynamic)
        chosen, selected = _rows.selected(
            rows, drop_zero_rows=drop_zero_rows, top_k=top_k, score=score
        )
        touched = rows.last_step[chosen] >= since
        changed = touched | ~np.isin(selected, previous.keys)
        row_fields = _rows.arrays(rows, chosen[changed], selected[changed], value_dtype)
        removed = previous.keys[~np.isin(previous.keys, selected)]
    return serving.ColumnDelta(
        since=since,
        step=int(column_state.step),
        static_buckets=buckets,
        static_values=bucket_values,
        removed=removed,
        **row_fields,
    )


def delta(
    state: Mapping[str, adaptive.ColumnState],
    feature_columns: Sequence[feature_column.EmbeddingColumn],
    previous: serving.Export,
    *,
    drop_zero_rows: bool = True,
    top_k: int | Mapping[str, int] | None = None,
    score: str = "freq",
    value_dtype: str = "float32",
) -> serving.Delta:
    """What changed since the export `previous` (see the module's docstring).

    Takes the options `previous` was exported with. Its rows' keys give the
    tombstones; the step it was taken at (per column) tells the changed rows.

    Raises:
      ValueError: as `export`; or `previous` lacks a column, or is from a later
        step than the state.
    """
    columns = _checked(state, feature_columns, top_k, score, value_dtype)
    deltas = {}
    for column in columns:
        old = previous.columns.get(column.name)
        if old is None:
            raise ValueError(f"column '{column.name}': not in the previous export")
        if old.step > int(state[column.name].step):
            raise ValueError(
                f"column '{column.name}': the previous export is of step {old.step}, "
                f"after the state's step {int(state[column.name].step)}"
            )
        deltas[column.name] = _column_delta(
            state[column.name],
            old,
            drop_zero_rows=drop_zero_rows,
            top_k=_cap(top_k, column.name),
            score=score,
            value_dtype=value_dtype,
        )
    return serving.Delta(deltas)
