"""The Flax face: the train step against optax and the feature-column calls by
hand, jit with donation, eviction, eval, and bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_jax as aj
from adaptive_jax import export, optim, serving
from adaptive_jax import feature_column as fc
from adaptive_jax import nn as ajnn

SPARSE = optim.ftrl(0.5, l1_regularization_strength=0.001)
DENSE = optax.sgd(0.3)
USER = fc.embedding_column(
    fc.categorical_column_with_adaptive_embedding(
        "user",
        16,
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=32, evict_option=aj.L2WeightEvict(0.3)
        ),
    ),
    dimension=3,
)
ITEM = fc.embedding_column(
    fc.categorical_column_with_hash_bucket("item", 16, dtype="int64"),
    dimension=2,
    combiner="sum",
)
BATCH = 8


class Tower(nn.Module):
    @nn.compact
    def __call__(self, features):
        return nn.Dense(4)(ajnn.Embed([ITEM], SPARSE)(features))


class Model(nn.Module):
    """Two `Embed`s, one of them nested: a user column and an item tower."""

    @nn.compact
    def __call__(self, features):
        x = jnp.concatenate(
            [ajnn.Embed([USER], SPARSE)(features), Tower()(features)], axis=1
        )
        return nn.Dense(1)(jnp.tanh(x))[:, 0]


def loss_fn(logits, labels):
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


# Jitted once for all the tests: compiling is most of their time.
INIT = jax.jit(Model().init)
STEP = jax.jit(ajnn.make_train_step(Model().apply, loss_fn, DENSE), donate_argnums=0)


def forward(params, user, item):
    """`Model` by hand, on embeddings looked up outside it."""
    tower = nn.Dense(4).apply({"params": params["Tower_0"]["Dense_0"]}, item)
    x = jnp.tanh(jnp.concatenate([user, tower], axis=1))
    return nn.Dense(1).apply({"params": params["Dense_0"]}, x)[:, 0]


def batch(seed=0, first_user=0):
    """Prepared features (users 0..7 from `first_user` on, routed by their
    parity) and labels."""
    rng = np.random.default_rng(seed)
    users = np.arange(first_user, first_user + BATCH)
    items = rng.integers(0, 20, (BATCH, 2))
    features = fc.prepare(
        {"user": users[:, None], "item": items},
        [USER, ITEM],
        adaptive_mask_tensors={"user": users % 2},
    )
    return features, jnp.asarray(users % 3 == 0, jnp.float32)


def assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def one_step():
    """One train step and its reference, computed by hand."""
    features, labels = batch()
    variables = INIT(jax.random.key(0), features)
    state = ajnn.TrainState.create(variables, DENSE)
    new_state, metrics = STEP(jax.tree.map(jnp.copy, state), features, labels)

    tables = variables["embedding_state"]
    user, user_state, user_res = fc.input_layer(
        features, [USER], tables["Embed_0"]["state"], optimizer=SPARSE
    )
    item, item_state, item_res = fc.input_layer(
        features, [ITEM], tables["Tower_0"]["Embed_0"]["state"], optimizer=SPARSE
    )
    params = variables["params"]
    loss, (d_params, d_user, d_item) = jax.value_and_grad(
        lambda p, u, i: loss_fn(forward(p, u, i), labels), argnums=(0, 1, 2)
    )(params, user, item)
    updates, _ = DENSE.update(d_params, DENSE.init(params), params)
    expected = {
        "loss": loss,
        "params": optax.apply_updates(params, updates),
        "user": fc.apply_gradients(user_state, user_res, d_user, [USER], SPARSE),
        "item": fc.apply_gradients(item_state, item_res, d_item, [ITEM], SPARSE),
    }
    return state, new_state, metrics, expected


def test_dense_update_is_optax_on_the_gradient(one_step):
    _, new_state, metrics, expected = one_step
    np.testing.assert_allclose(metrics["loss"], expected["loss"], rtol=1e-6)
    assert_trees_close(new_state.params, expected["params"])
    assert int(new_state.step) == 1


def test_sparse_update_is_apply_gradients_of_the_activation_gradient(one_step):
    _, new_state, _, expected = one_step
    tables = new_state.embeddings
    assert_trees_close(tables["Embed_0"]["state"], expected["user"])
    assert_trees_close(tables["Tower_0"]["Embed_0"]["state"], expected["item"])
    stats = fc.summary(tables["Embed_0"]["state"])["user_embedding"]
    assert stats["live_rows"] == BATCH // 2  # the odd users got rows


def test_eval_step_reads_as_a_serving_export_does(one_step):
    # An eval inserts nothing: the ids the step gave rows read them, the others
    # their buckets, whichever ids share the batch; the same as serving.
    _, trained, _, _ = one_step
    features, labels = batch(first_user=4)  # users 8 to 11 are new
    outputs, eval_metrics = ajnn.make_eval_step(Model().apply, loss_fn)(
        trained, features, labels
    )
    tables = trained.embeddings
    built = {
        **serving.build(export.export(tables["Embed_0"]["state"], [USER])),
        **serving.build(export.export(tables["Tower_0"]["Embed_0"]["state"], [ITEM])),
    }
    served = ajnn.serve(Model().apply, built)(trained.params, features)
    np.testing.assert_allclose(outputs, served, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(eval_metrics["loss"], loss_fn(served, labels), rtol=1e-6)


def test_input_layer_refuses_a_training_flag_that_is_not_a_bool():
    features, _ = batch()
    state = fc.init_state([USER], SPARSE, jax.random.key(0))
    with pytest.raises(ValueError, match="training must be True .* got 'no'"):
        fc.input_layer(features, [USER], state, optimizer=SPARSE, training="no")


def test_evict_every_runs_the_columns_eviction(one_step):
    state, plain, _, _ = one_step
    features, labels = batch()
    evicting, _ = ajnn.make_train_step(Model().apply, loss_fn, DENSE, evict_every=1)(
        state, features, labels
    )
    expected = fc.maybe_evict(
        plain.embeddings["Embed_0"]["state"], [USER], SPARSE, every=1
    )
    assert_trees_close(evicting.embeddings["Embed_0"]["state"], expected)
    assert fc.summary(expected)["user_embedding"]["evicted_l2"] > 0


def test_jitted_step_donates_the_state_and_learns():
    features, labels = batch()
    state = ajnn.TrainState.create(INIT(jax.random.key(1), features), DENSE)
    losses = []
    for _ in range(12):
        old = jax.tree_util.tree_flatten_with_path(state)[0]
        state, metrics = STEP(state, features, labels)
        # A column's `stats.last_served` is written whole in each step: jit drops
        # the old one as unused, and there is nothing to donate.
        kept = {jax.tree_util.keystr(p) for p, leaf in old if not leaf.is_deleted()}
        assert {k.rsplit(".", 1)[-1] for k in kept} <= {"last_served"}
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.step) == 12
    assert STEP._cache_size() == 1


def drop(features, name):
    return {k: v for k, v in features.items() if k != name}


@pytest.mark.parametrize(
    "case, match",
    [
        pytest.param(
            "missing_feature",
            "column 'item': feature 'item_embedding' is missing",
            id="missing_feature",
        ),
        pytest.param(
            "raw_features",
            "column 'user': feature 'user_embedding' is missing",
            id="raw_features",
        ),
        pytest.param(
            "labels_too_short",
            r"labels have shape \(7,\), but feature 'item_embedding'",
            id="labels_too_short",
        ),
        pytest.param(
            "labels_scalar",
            r"labels have shape \(\), but feature 'item_embedding'",
            id="labels_scalar",
        ),
    ],
)
def test_bad_input_names_the_feature(one_step, case, match):
    state = one_step[0]
    features, labels = batch()
    if case == "missing_feature":
        features = drop(features, "item_embedding")
    elif case == "raw_features":
        features = {"user": np.arange(BATCH)[:, None], "item": np.ones((BATCH, 1))}
    elif case == "labels_too_short":
        labels = labels[:-1]
    else:
        labels = labels[0]
    step = jax.jit(ajnn.make_train_step(Model().apply, loss_fn, DENSE))
    with pytest.raises(ValueError, match=match):
        step(state, features, labels)


def test_bad_configuration():
    with pytest.raises(ValueError, match=r"also have \['batch_stats'\]"):
        ajnn.TrainState.create({"params": {}, "batch_stats": {}}, DENSE)
    with pytest.raises(ValueError, match="evict_every must be >= 1, got 0"):
        ajnn.make_train_step(Model().apply, loss_fn, DENSE, evict_every=0)


def test_summary_finds_the_tables_wherever_they_are_held(one_step):
    _, new_state, _, _ = one_step
    by_state = fc.summary(new_state)
    assert sorted(by_state) == ["item_embedding", "user_embedding"]
    assert by_state == fc.summary(new_state.embeddings)
    assert (
        by_state["user_embedding"]
        == fc.summary(new_state.embeddings["Embed_0"]["state"])["user_embedding"]
    )
    assert by_state == fc.summary(new_state.variables)
    with pytest.raises(ValueError, match=r"state.embeddings\[<Embed module>\]"):
        fc.summary(new_state.params)


def test_by_name_splits_in_name_order():
    class Both(nn.Module):
        @nn.compact
        def __call__(self, features):
            whole = ajnn.Embed([USER, ITEM], SPARSE, name="whole")(features)
            parts = ajnn.Embed([USER, ITEM], SPARSE, by_name=True, name="parts")(
                features
            )
            return whole, parts

    features, _ = batch()
    variables = Both().init(jax.random.key(0), features)
    variables["embedding_state"]["parts"] = variables["embedding_state"]["whole"]
    whole, parts = Both().apply(variables, features)
    assert list(parts) == ["item_embedding", "user_embedding"]
    np.testing.assert_array_equal(whole, jnp.concatenate(list(parts.values()), 1))
