"""Bad input at the face's edges: an error that names the column, what is wrong
and the fix, raised before any state changes; no silent wrong result."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import export, optim
from adaptive_jax import feature_column as fc

OPT = optim.ftrl(0.1)


def make(
    buckets: int | None = 4,
    dim: int = 2,
    capacity: int | None = 8,
    *,
    key: str = "c",
    dtype: str = "int64",
    admission: Any = None,
    partitions: int | None = None,
) -> fc.EmbeddingColumn:
    """A column: adaptive (buckets and capacity), static or plain dynamic."""
    option = None
    if capacity is not None:
        option = aj.EmbeddingVariableOption(capacity=capacity, filter_option=admission)
    if buckets is None:
        categorical = fc.categorical_column_with_embedding(
            key, dtype, partitions, ev_option=option
        )
    elif option is None:
        categorical = fc.categorical_column_with_hash_bucket(key, buckets, dtype)
    else:
        categorical = fc.categorical_column_with_adaptive_embedding(
            key, buckets, dtype, partitions, ev_option=option
        )
    return fc.embedding_column(categorical, dim)


FEATURES = {"c": np.array([[1], [2], [3]])}
MASKS = {"c": np.array([1, 0, 1])}
BASE = make()


def lookup(column, state, optimizer=OPT, features=FEATURES, masks=MASKS):
    return fc.input_layer(
        features, [column], state, optimizer=optimizer, adaptive_mask_tensors=masks
    )


# A state against its columns.


STATE_MISMATCHES = {
    "buckets_4_then_7": (make(), make(buckets=7), "static/values is float32\\[4, 2\\]"),
    "dimension_2_then_3": (make(), make(dim=3), "expects float32\\[4, 3\\]"),
    "capacity_8_then_16": (make(), make(capacity=16), "dynamic/values is float32\\[8"),
    "partitions_none_then_2": (
        make(),
        make(partitions=2),
        "expects float32\\[2, 4, 2\\]",
    ),
    "no_filter_then_filter": (
        make(),
        make(admission=aj.CounterFilter(2, max_element_size=64)),
        "the state has no admission counts, the column has an ev_option.filter",
    ),
    "filter_sized_otherwise": (
        make(admission=aj.CounterFilter(2, max_element_size=64)),
        make(admission=aj.CounterFilter(2, max_element_size=640)),
        "sketch/counts is uint8\\[4, \\d+\\], the column expects uint8\\[4, \\d+\\]",
    ),
    "static_then_adaptive": (
        make(capacity=None),
        make(),
        "the state has no dynamic table, the column has an ev_option",
    ),
    "adaptive_then_dynamic": (
        make(),
        make(buckets=None),
        "the state has a static table, the column has none",
    ),
}


@pytest.mark.parametrize(
    ("made_for", "used_with", "match"),
    list(STATE_MISMATCHES.values()),
    ids=list(STATE_MISMATCHES),
)
@pytest.mark.parametrize("edge", ["input_layer", "apply_gradients", "evict", "export"])
def test_a_state_of_other_settings_is_refused_at_each_edge(
    made_for, used_with, match, edge
):
    state = fc.init_state([made_for], OPT, jax.random.key(0))
    calls: dict[str, Callable] = {
        "input_layer": lambda: fc.input_layer(
            {"c": [[1], [2]]}, [used_with], state, optimizer=OPT
        ),
        "apply_gradients": lambda: fc.apply_gradients(
            state,
            residuals_of(used_with),
            jnp.ones((1, used_with.width)),
            [used_with],
            OPT,
        ),
        "evict": lambda: fc.evict(state, [used_with], OPT),
        "export": lambda: export.export(state, [used_with]),
    }
    with pytest.raises(ValueError, match="column 'c' \\(state\\['c_embedding'\\]\\)"):
        calls[edge]()
    with pytest.raises(ValueError, match=match):
        calls[edge]()


def residuals_of(column):
    """Residuals of a lookup of one example by `column`'s own state."""
    state = fc.init_state([column], OPT, jax.random.key(0))
    masks = {"c": np.array([1])} if column.categorical_column.adaptive else None
    return fc.input_layer(
        {"c": [[1]]}, [column], state, optimizer=OPT, adaptive_mask_tensors=masks
    )[2]


def test_a_state_made_for_another_optimizer_names_both_slots():
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    with pytest.raises(ValueError, match="has FtrlSlots, the optimizer Adagrad needs"):
        lookup(BASE, state, optimizer=optim.adagrad(0.1))


def test_a_missing_column_or_a_foreign_value_is_named():
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    other = make(key="d")
    with pytest.raises(ValueError, match="column 'd': the state has no 'd_embedding'"):
        fc.input_layer(
            {"d": [[1]]},
            [other],
            state,
            optimizer=OPT,
            adaptive_mask_tensors={"d": [1]},
        )
    with pytest.raises(ValueError, match="is a dict, not a ColumnState"):
        lookup(BASE, {"c_embedding": {}})


def test_a_refusal_under_jit_leaves_the_donated_state_alive():
    """The check runs while the step is traced, before XLA takes the buffers."""
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    wider = make(buckets=7)
    features = fc.prepare(FEATURES, [wider], adaptive_mask_tensors=MASKS)
    step = jax.jit(
        lambda s, f: fc.input_layer(f, [wider], s, optimizer=OPT)[1], donate_argnums=0
    )
    with pytest.raises(ValueError, match="hash_bucket_size"):
        step(state, features)
    fresh = fc.init_state([BASE], OPT, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(fresh), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # not deleted


def test_check_state_is_public_and_passes_a_matching_state():
    columns = [make(), make(None, key="d"), make(5, capacity=None, key="e")]
    state = fc.init_state(columns, OPT, jax.random.key(0))
    fc.check_state(state, columns, OPT)
    fc.check_state(state, columns)  # without the optimizer: slots unchecked


def test_an_adagrad_state_exports_and_passes_the_check_without_an_optimizer():
    """Adagrad's one slot per table against FTRL's two: only the optimizer's
    own check may tell them apart."""
    columns = [make(), make(None, key="d"), make(5, capacity=None, key="e")]
    state = fc.init_state(columns, optim.adagrad(0.1), jax.random.key(0))
    fc.check_state(state, columns)
    fc.check_state(state, columns, optim.adagrad(0.1))
    exported = export.export(state, columns)
    assert sorted(exported.columns) == sorted(c.name for c in columns)
    with pytest.raises(ValueError, match="the optimizer Ftrl needs"):
        fc.check_state(state, columns, OPT)


# A gradient against its residuals.


GRADIENTS = {
    "fewer_rows": (
        jnp.ones((2, 2)),
        "d_embeddings has 2 rows, but its lookup served 3",
    ),
    "more_rows": (jnp.ones((5, 2)), "d_embeddings has 5 rows, but its lookup served 3"),
    "rank_1": (
        jnp.ones((2,)),
        "d_embeddings has shape \\[2\\], expected \\[batch, 2\\]",
    ),
    "rank_3": (jnp.ones((3, 2, 1)), "expected \\[batch, 2\\]"),
    "width_3": (jnp.ones((3, 3)), "shape \\[3, 3\\], expected \\[batch, 2\\]"),
    "integers": (jnp.ones((3, 2), jnp.int32), "d_embeddings must be floating"),
}


@pytest.mark.parametrize(
    ("gradient", "match"), list(GRADIENTS.values()), ids=list(GRADIENTS)
)
def test_a_gradient_that_does_not_fit_the_lookup_is_refused(gradient, match):
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    _, state, residuals = lookup(BASE, state)
    with pytest.raises(ValueError, match=match):
        fc.apply_gradients(state, residuals, gradient, [BASE], OPT)
    # Under jit too, at trace time.
    step = jax.jit(lambda s, r, g: fc.apply_gradients(s, r, g, [BASE], OPT))
    with pytest.raises(ValueError, match=match):
        step(state, residuals, gradient)


def test_residuals_of_other_columns_are_named():
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    _, state, _ = lookup(BASE, state)
    with pytest.raises(ValueError, match="column 'c': the residuals have no"):
        fc.apply_gradients(state, {}, jnp.ones((3, 2)), [BASE], OPT)


def test_a_stacked_columns_gradient_has_a_row_per_example():
    members = [
        fc.categorical_column_with_adaptive_embedding(k, 3, "int64") for k in ("a", "b")
    ]
    column = fc.embedding_column(fc.stacked_column(members, "s"), 2)
    state = fc.init_state([column], OPT, jax.random.key(0))
    features = {"a": [[1], [2]], "b": [[3], [4]]}
    masks = {"a": [1, 0], "b": [0, 1]}
    emb, state, residuals = fc.input_layer(
        features, [column], state, optimizer=OPT, adaptive_mask_tensors=masks
    )
    assert emb.shape == (2, 4)
    fc.apply_gradients(state, residuals, jnp.ones((2, 4)), [column], OPT)
    with pytest.raises(ValueError, match="has 4 rows, but its lookup served 2"):
        fc.apply_gradients(state, residuals, jnp.ones((4, 4)), [column], OPT)


# Features.


def test_features_prepared_for_other_buckets_are_refused():
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    features = fc.prepare(FEATURES, [make(buckets=7)], adaptive_mask_tensors=MASKS)
    with pytest.raises(ValueError, match="prepared for hash_bucket_size=7, the col"):
        fc.input_layer(features, [BASE], state, optimizer=OPT)


def test_masks_with_prepared_features_are_refused_not_ignored():
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    features = fc.prepare(FEATURES, [BASE], adaptive_mask_tensors=MASKS)
    with pytest.raises(ValueError, match="pass the masks to fc.prepare instead"):
        fc.input_layer(
            features, [BASE], state, optimizer=OPT, adaptive_mask_tensors=MASKS
        )


def test_features_prepared_for_some_columns_only_are_refused():
    other = make(key="d")
    state = fc.init_state([BASE, other], OPT, jax.random.key(0))
    features = fc.prepare(FEATURES, [BASE], adaptive_mask_tensors=MASKS)
    with pytest.raises(ValueError, match="but not for \\['d_embedding'\\]"):
        fc.input_layer(features, [BASE, other], state, optimizer=OPT)


@pytest.mark.parametrize("traced", ["feature", "mask", "neither"])
def test_raw_features_inside_jit_say_to_prepare_them(traced):
    state = fc.init_state([BASE], OPT, jax.random.key(0))
    features, masks = dict(FEATURES), dict(MASKS)
    if traced == "feature":
        features = {"c": jnp.asarray(FEATURES["c"])}
    if traced == "mask":
        masks = {"c": jnp.asarray(MASKS["c"])}

    @jax.jit
    def step(features, masks, state):
        return lookup(BASE, state, features=features, masks=masks)[0]

    with pytest.raises(ValueError, match="column 'c': input_layer is traced inside"):
        if traced == "neither":  # numpy features closed over
            jax.jit(lambda s: lookup(BASE, s)[0])(state)
        else:
            step(features, masks, state)


@pytest.mark.parametrize("traced", ["feature", "mask"])
def test_prepare_inside_jit_names_the_traced_input(traced):
    if traced == "feature":
        run = jax.jit(lambda f: fc.prepare(f, [BASE], adaptive_mask_tensors=MASKS))
        arg, match = {"c": jnp.asarray(FEATURES["c"])}, "feature 'c' is traced"
    else:
        run = jax.jit(lambda m: fc.prepare(FEATURES, [BASE], adaptive_mask_tensors=m))
        arg = {"c": jnp.asarray(MASKS["c"])}
        match = "adaptive_mask_tensors\\['c'\\] is traced"
    with pytest.raises(ValueError, match=f"column 'c': {match} inside jit"):
        run(arg)
