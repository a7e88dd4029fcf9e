"""Checks at the edges of the feature-column face: a state against its
columns, a gradient against its residuals, features against the columns.

Each compares shapes, dtypes and static settings only, so it runs when a
function is traced (once per compile under jit, at each eager call) and costs
nothing in the step; each raises a ValueError before any state changes, naming
the column, what is wrong and the fix. The state is compared, leaf by leaf,
with the shapes `init_state` gives the column and optimizer (`jax.eval_shape`,
cached): the number of buckets, the dimension, the capacity, the partitions,
the admission sketch and the optimizer's slots.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import optim
from adaptive_jax.column import adaptive
from adaptive_jax.feature_column import _layer
from adaptive_jax.feature_column._specs import EmbeddingColumn

NONFINITE = ("skip", "raise")

_FIX = (
    "make the state with fc.init_state for these columns and optimizer, or pass "
    "the columns and optimizer it was made with"
)
_MEANING = {  # a leaf's path in a column's state -> what its shape says
    "static/values": "[hash_bucket_size, dimension]",
    "dynamic/values": "[capacity, dimension], per partition with partition_num",
    "sketch/counts": "the admission sketch that ev_option.filter_option sizes",
    "default_values": "[init_option.default_value_dim, dimension]",
}


def _path(path: tuple) -> str:
    return "/".join(
        str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path
    )


@functools.lru_cache(maxsize=512)
def _expected_cached(column: EmbeddingColumn, spec: Any) -> Any:
    return _expected(column, spec)


def _expected(column: EmbeddingColumn, spec: Any) -> Any:
    """The shapes and dtypes of the state `init_state` makes for the column."""
    shapes = jax.eval_shape(
        lambda: _layer.init_state([column], spec, jax.random.key(0))
    )
    return shapes[column.name]


def expected_state(column: EmbeddingColumn, optimizer: Any) -> Any:
    """`init_state`'s state of one column, as shapes and dtypes (cached)."""
    spec = optim.spec_of(optimizer)
    try:
        return _expected_cached(column, spec)
    except TypeError:  # an unhashable initializer: not cached
        return _expected(column, spec)


def _where(column: EmbeddingColumn) -> str:
    return f"column '{column.categorical_column.key}' (state['{column.name}'])"


def _kinds(got: Any, want: Any, column: EmbeddingColumn) -> None:
    """The stores the state has against those the column has."""
    categorical = column.categorical_column
    stores = {  # field: (what it is, the column's setting that makes one)
        "static": (
            "a static table",
            f"hash_bucket_size={categorical.hash_bucket_size}",
        ),
        "dynamic": ("a dynamic table", "an ev_option"),
        "sketch": ("admission counts", "an ev_option.filter_option"),
        "default_values": (
            "default values",
            "a plain dynamic table or migration 'none'",
        ),
    }
    for field, (what, setting) in stores.items():
        has, needs = getattr(got, field) is not None, getattr(want, field) is not None
        if has != needs:
            column_says = f"has {setting}" if needs else "has none"
            state_says = what if has else "no " + what.removeprefix("a ")
            raise ValueError(
                f"{_where(column)}: the state has {state_says}, the column "
                f"{column_says}: {_FIX}"
            )


def _slots(got: Any, want: Any, column: EmbeddingColumn, spec: Any) -> None:
    for field in ("static", "dynamic"):
        table, wanted = getattr(got, field), getattr(want, field)
        if table is None:
            continue
        have, need = type(table.slots).__name__, type(wanted.slots).__name__
        if have != need:
            raise ValueError(
                f"{_where(column)}: the state's {field} table has {have}, the "
                f"optimizer {type(spec).__name__} needs {need}: pass the optimizer "
                "the state was made with, or make a new state with fc.init_state"
            )


def _leaves(got: Any, want: Any, column: EmbeddingColumn, *, slots: bool) -> None:
    got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_tree = jax.tree_util.tree_flatten_with_path(want)
    if got_tree != want_tree:
        raise ValueError(
            f"{_where(column)}: the state's structure is not the one fc.init_state "
            f"makes for this column ({len(got_leaves)} arrays, expected "
            f"{len(want_leaves)}; a state of another version?): {_FIX}"
        )
    pairs = [
        (_path(path), leaf, wanted)
        for (path, leaf), (_, wanted) in zip(got_leaves, want_leaves, strict=True)
    ]
    pairs.sort(key=lambda pair: pair[0] not in _MEANING)  # those that say most first
    for name, leaf, wanted in pairs:
        if not slots and "/slots/" in f"/{name}/":
            continue
        shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
        if shape != wanted.shape or dtype != wanted.dtype:
            meaning = f" ({_MEANING[name]})" if name in _MEANING else ""
            raise ValueError(
                f"{_where(column)}: the state's {name} is {dtype}{list(shape)}, the "
                f"column expects {np.dtype(wanted.dtype)}{list(wanted.shape)}"
                f"{meaning}: the state was made for other settings; {_FIX}"
            )


def _without_slots(state: adaptive.ColumnState) -> adaptive.ColumnState:
    """`state` without its tables' optimizer slots."""
    static = None if state.static is None else state.static.replace(slots=None)
    dynamic = None if state.dynamic is None else state.dynamic.replace(slots=None)
    return state.replace(static=static, dynamic=dynamic)


def check_state(
    state: Mapping[str, Any],
    feature_columns: Sequence[EmbeddingColumn],
    optimizer: Any = None,
) -> None:
    """Raises unless `state` holds, for each column, the state `init_state`
    makes for it and `optimizer` (None: the slots are not checked).

    `input_layer`, `apply_gradients`, `evict` and the exports call it; call it
    after restoring a checkpoint into a target made elsewhere, say. Shapes
    only: it runs under jit at trace time.

    Raises:
      ValueError: naming the column and the first array that differs (its
        shape and dtype, and the setting that sizes it), or a missing column.
    """
    columns = feature_columns
    if not isinstance(state, Mapping):
        raise ValueError(
            f"the state must be the dict fc.init_state returns, got "
            f"{type(state).__name__}"
        )
    spec = None if optimizer is None else optim.spec_of(optimizer)
    for column in columns:
        if column.name not in state:
            raise ValueError(
                f"column '{column.categorical_column.key}': the state has no "
                f"'{column.name}' (it has {sorted(state)}): {_FIX}"
            )
        got = state[column.name]
        if not isinstance(got, adaptive.ColumnState):
            raise ValueError(
                f"{_where(column)} is a {type(got).__name__}, not a ColumnState: {_FIX}"
            )
        want = expected_state(column, spec or optim.Ftrl(0.1))
        _kinds(got, want, column)
        if spec is not None:
            _slots(got, want, column, spec)
        else:  # any optimizer's slots: FTRL's two per table or Adagrad's one
            got, want = _without_slots(got), _without_slots(want)
        _leaves(got, want, column, slots=spec is not None)


def check_gradients(
    d_embeddings: Any,
    residuals: Mapping[str, Any],
    columns: Sequence[EmbeddingColumn],
) -> None:
    """Raises unless `d_embeddings` is `[batch, sum of widths]`, floating, with
    the rows of the batch each column's residuals served."""
    total = sum(c.width for c in columns)
    shape = tuple(np.shape(d_embeddings))
    if len(shape) != 2 or shape[1] != total:
        raise ValueError(
            f"d_embeddings has shape {list(shape)}, expected [batch, {total}]: the "
            "gradient of the embeddings input_layer returned (one column per "
            "dimension of each column, in the order of their names)"
        )
    if hasattr(d_embeddings, "dtype"):
        dtype = d_embeddings.dtype
    else:
        dtype = np.asarray(d_embeddings).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"d_embeddings must be floating, got dtype {dtype}")
    for column in columns:
        key = column.categorical_column.key
        found = residuals.get(column.name) if isinstance(residuals, Mapping) else None
        if not isinstance(found, adaptive.Residuals):
            raise ValueError(
                f"column '{key}': the residuals have no '{column.name}': pass the "
                "residuals input_layer returned for these columns"
            )
        if found.examples is None:
            continue
        examples = found.examples.shape[0] // column.categorical_column.fields
        if shape[0] != examples:
            raise ValueError(
                f"column '{key}': d_embeddings has {shape[0]} rows, but its lookup "
                f"served {examples} examples: pass the gradient of the embeddings "
                "that input_layer returned with these residuals (a missing row "
                "would train as 0, an extra one be dropped)"
            )


def check_nonfinite(nonfinite: str) -> None:
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")


def check_features(
    features: Mapping[str, Any], columns: Sequence[EmbeddingColumn], state: Any
) -> bool:
    """Whether `features` are `prepare`'s output for `columns` (checked: for
    these columns' buckets); else raw features (`prepare` checks them), which
    a jitted step (its `state` traced) cannot take."""
    if not isinstance(features, Mapping):
        raise ValueError(
            f"features must be a dict, from feature key to ids (or fc.prepare's "
            f"output), got {type(features).__name__}"
        )
    prepared = [
        c for c in columns if isinstance(features.get(c.name), adaptive.ColumnIds)
    ]
    if prepared and len(prepared) < len(columns):
        missing = [c.name for c in columns if c not in prepared]
        raise ValueError(
            f"features hold fc.prepare's output for {[c.name for c in prepared]} "
            f"but not for {missing}: prepare them with all the columns given here"
        )
    for column in prepared:
        made_for = features[column.name].hash_bucket_size
        buckets = column.categorical_column.hash_bucket_size
        if made_for is not None and made_for != buckets:
            raise ValueError(
                f"column '{column.categorical_column.key}': its features were "
                f"prepared for hash_bucket_size={made_for}, the column has "
                f"{buckets}: prepare them with the columns given here"
            )
    if not prepared and any(
        isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(state)
    ):
        key = columns[0].categorical_column.key if columns else "?"
        raise ValueError(
            f"column '{key}': input_layer is traced inside jit with raw features, "
            "which are prepared on the host: call fc.prepare(features, columns, "
            "adaptive_mask_tensors=...) outside the jitted step and pass its "
            "output in"
        )
    return bool(prepared)
