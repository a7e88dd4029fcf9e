"""Non-finite numbers never reach a table: a row whose update is not finite
keeps its value and slots and is counted; `nonfinite="raise"` raises."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from jax.experimental import checkify

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import optim, sparse

OPTIMIZERS = {
    "ftrl": optim.ftrl(0.1, l1_regularization_strength=0.01),
    "adagrad": optim.adagrad(0.1),
}
BUCKETS, CAPACITY, DIM, BATCH = 5, 16, 2, 6


def column(partitions=None):
    categorical = fc.categorical_column_with_adaptive_embedding(
        "c",
        BUCKETS,
        "int64",
        partitions,
        ev_option=aj.EmbeddingVariableOption(capacity=CAPACITY),
    )
    return fc.embedding_column(categorical, DIM, "sum")


def arrays(state):
    """The values and slots of both tables, on the host."""
    tables = (state.static, state.dynamic)
    return [np.asarray(x) for t in tables for x in (t.values, *t.slots)]


def bad_rows(residuals, d_embeddings):
    """The model: the (store, row) pairs whose entries' summed gradient is not
    finite, from each entry's gradient `d[example] * scale`."""
    d = np.asarray(d_embeddings, np.float32)
    segments = np.asarray(residuals.segments)
    scale = np.asarray(residuals.scale, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        grads = (
            np.where(
                (segments < len(d))[:, None], d[np.minimum(segments, len(d) - 1)], 0.0
            )
            * scale[:, None]
        )
    sums = {}
    for store, rows, none in (
        ("static", np.asarray(residuals.static_rows), BUCKETS),
        ("dynamic", np.asarray(residuals.dynamic_rows), CAPACITY),
    ):
        for entry, row in enumerate(rows.tolist()):
            if row < none:
                key = (store, row)
                with np.errstate(invalid="ignore", over="ignore"):
                    sums[key] = sums.get(key, 0.0) + grads[entry]
    return {key for key, g in sums.items() if not np.isfinite(g).all()}


GRADIENT = st.sampled_from([0.5, -1.0, 3.0, np.nan, np.inf, -np.inf])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(OPTIMIZERS)),
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 9), min_size=BATCH, max_size=BATCH),
            st.lists(st.integers(0, 1), min_size=BATCH, max_size=BATCH),
            st.lists(GRADIENT, min_size=BATCH * DIM, max_size=BATCH * DIM),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_a_table_never_holds_a_non_finite_value(name, steps):
    """Against a model of the rows a step may not train: those rows keep their
    value and slots, the count says how many, and no table holds a NaN or inf."""
    opt, col = OPTIMIZERS[name], column()
    state = fc.init_state([col], opt, jax.random.key(0))
    counted = 0
    for keys, mask, grads in steps:
        features = {"c": sparse.from_ragged([[k] for k in keys])}
        _, state, residuals = fc.input_layer(
            features, [col], state, optimizer=opt, adaptive_mask_tensors={"c": mask}
        )
        d = jnp.asarray(np.reshape(grads, (BATCH, DIM)), jnp.float32)
        before = state["c_embedding"]
        bad = bad_rows(residuals["c_embedding"], d)
        state = fc.apply_gradients(state, residuals, d, [col], opt)
        after = state["c_embedding"]
        for a in arrays(after):
            assert np.isfinite(a).all()
        for store, row in bad:
            table_before = getattr(before, store)
            table_after = getattr(after, store)
            for x, y in zip(
                (table_before.values, *table_before.slots),
                (table_after.values, *table_after.slots),
                strict=True,
            ):
                np.testing.assert_array_equal(np.asarray(x)[row], np.asarray(y)[row])
        counted += len(bad)
        assert fc.summary(state)["c_embedding"]["nonfinite_rows"] == counted


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("partitions", [None, 2], ids=["one_table", "partitioned"])
def test_a_nan_gradient_is_skipped_and_counted(name, partitions):
    opt, col = OPTIMIZERS[name], column(partitions)
    state = fc.init_state([col], opt, jax.random.key(0))
    features = {"c": sparse.from_ragged([[1], [2], [3]])}
    masks = {"c": [1, 0, 1]}
    _, state, residuals = fc.input_layer(
        features, [col], state, optimizer=opt, adaptive_mask_tensors=masks
    )
    d = jnp.asarray([[np.nan, 1.0], [np.inf, 0.0], [1.0, 1.0]], jnp.float32)
    state = fc.apply_gradients(state, residuals, d, [col], opt)
    assert fc.summary(state)["c_embedding"]["nonfinite_rows"] == 2
    for leaf in jax.tree.leaves(
        (state["c_embedding"].static, state["c_embedding"].dynamic)
    ):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert bool(jnp.all(jnp.isfinite(leaf)))


def test_an_overflowing_gradient_is_skipped_too():
    """1e20 is finite, its square is not in float32: FTRL's accumulator would
    be inf and its weight NaN."""
    opt, col = OPTIMIZERS["ftrl"], column()
    state = fc.init_state([col], opt, jax.random.key(0))
    _, state, residuals = fc.input_layer(
        {"c": [[1]]}, [col], state, optimizer=opt, adaptive_mask_tensors={"c": [0]}
    )
    state = fc.apply_gradients(state, residuals, jnp.full((1, DIM), 1e20), [col], opt)
    assert fc.summary(state)["c_embedding"]["nonfinite_rows"] == 1
    assert bool(jnp.all(jnp.isfinite(state["c_embedding"].static.slots.accumulator)))


def nan_step(opt, col):
    state = fc.init_state([col], opt, jax.random.key(0))
    _, state, residuals = fc.input_layer(
        {"c": [[1]]}, [col], state, optimizer=opt, adaptive_mask_tensors={"c": [1]}
    )
    return state, residuals, jnp.full((1, DIM), np.nan)


def test_raise_names_the_column_and_returns_no_state():
    opt, col = OPTIMIZERS["ftrl"], column()
    state, residuals, d = nan_step(opt, col)
    with pytest.raises(
        Exception, match="column 'c': 1 table rows got an update that was not"
    ):
        fc.apply_gradients(state, residuals, d, [col], opt, nonfinite="raise")
    fine = fc.apply_gradients(
        state, residuals, jnp.ones((1, DIM)), [col], opt, nonfinite="raise"
    )
    assert fc.summary(fine)["c_embedding"]["nonfinite_rows"] == 0


def test_raise_inside_a_jitted_step_runs_under_checkify():
    opt, col = OPTIMIZERS["ftrl"], column()
    state, residuals, d = nan_step(opt, col)

    def step(state, residuals, d):
        return fc.apply_gradients(state, residuals, d, [col], opt, nonfinite="raise")

    error, _ = checkify.checkify(jax.jit(step))(state, residuals, d)
    assert "column 'c'" in error.get()
    error, _ = checkify.checkify(jax.jit(step))(state, residuals, jnp.ones((1, DIM)))
    assert error.get() is None
    with pytest.raises(ValueError, match="checkify"):  # jitted, not checkified
        jax.jit(step)(state, residuals, d)


def test_nonfinite_takes_skip_or_raise():
    opt, col = OPTIMIZERS["ftrl"], column()
    state, residuals, d = nan_step(opt, col)
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        fc.apply_gradients(state, residuals, d, [col], opt, nonfinite="ignore")


def test_the_sparse_update_writes_tensorflows_nan_when_asked():
    """`skip_nonfinite=False`: TensorFlow's sparse kernel, NaN slots and all."""
    spec = optim.Ftrl(0.1)
    table = jnp.ones((2, 2))
    grads = jnp.asarray([[np.nan, 1.0]], jnp.float32)
    kept, slots = optim.apply_sparse(
        spec, table, spec.init_slots(table), jnp.array([0]), grads
    )
    assert np.asarray(kept)[0].tolist() == [1.0, 1.0]
    assert bool(jnp.all(jnp.isfinite(slots.linear)))
    written, slots = optim.apply_sparse(
        spec, table, spec.init_slots(table), jnp.array([0]), grads, skip_nonfinite=False
    )
    assert np.asarray(written)[0, 0] == 0.0 and np.isnan(np.asarray(slots.linear)[0, 0])
