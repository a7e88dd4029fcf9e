"""The NNX face: a model trained end to end (tables and dense params train, the
optimizer never holds a table), one step against the feature-column calls and
optax by hand, resume, serving, the linen bridge's trap, and bad input."""

import importlib.util
import pathlib
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import adaptive_jax as aj
from adaptive_jax import export, serving
from adaptive_jax import feature_column as fc
from adaptive_jax import nnx as ajnnx
from adaptive_jax.checkpoint import Checkpointer

SPARSE = aj.optim.ftrl(0.5, l1_regularization_strength=0.001)
DENSE = optax.adagrad(0.2)  # adam fails strict promotion (optax)
USER = fc.embedding_column(
    fc.categorical_column_with_adaptive_embedding(
        "user",
        8,
        dtype="string",
        ev_option=aj.EmbeddingVariableOption(
            capacity=32, filter_option=aj.CounterFilter(2)
        ),
    ),
    dimension=3,
)
ITEM = fc.embedding_column(
    fc.categorical_column_with_hash_bucket("item", 16, dtype="int64"), dimension=2
)
BATCH = 8


class Model(nnx.Module):
    """A user tower and an item tower over one `Embed` (by name), a dot product."""

    def __init__(self, rngs):
        self.embed = ajnnx.Embed([USER, ITEM], SPARSE, by_name=True, rngs=rngs)
        self.user = nnx.Linear(3, 2, rngs=rngs)
        self.item = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, features):
        e = self.embed(features)
        return jnp.sum(
            self.user(e["user_embedding"]) * self.item(e["item_embedding"]), 1
        )


def loss_fn(model, features, labels):
    return optax.sigmoid_binary_cross_entropy(model(features), labels).mean()


STEP = ajnnx.make_train_step(loss_fn)


def raw(seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 6, batch)
    return {
        "user": np.array([f"u{u}" for u in users]),
        "item": rng.integers(0, 20, (batch, 2)),
    }, (users % 2).astype(np.float32)


def batch(seed=0):
    features, labels = raw(seed)
    return fc.prepare(features, [USER, ITEM]), jnp.asarray(labels)


def fresh():
    model = Model(nnx.Rngs(0))
    return model, nnx.Optimizer(model, DENSE, wrt=nnx.Param)


def copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def assert_trees_close(actual, expected, **tolerance):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tolerance)


@pytest.fixture(scope="module")
def trained():
    """A model after 12 steps, with its losses and its state at step 0."""
    model, optimizer = fresh()
    start = copy(nnx.state(model))
    losses = [float(STEP(model, optimizer, *batch(s % 3))["loss"]) for s in range(12)]
    return model, optimizer, start, losses


def test_tables_and_dense_params_train(trained):
    model, _, start, losses = trained
    assert losses[-1] < 0.7 * losses[0]
    now = nnx.state(model)
    tables, params = now["embed"]["tables"].get_value(), nnx.state(model, nnx.Param)
    before = start["embed"]["tables"].get_value()
    assert not np.allclose(
        tables["item_embedding"].static.values, before["item_embedding"].static.values
    )
    assert fc.summary(model)["user_embedding"]["live_rows"] == 6  # each user twice+
    assert not np.allclose(params["user"]["kernel"][...], start["user"]["kernel"][...])


def test_the_optimizer_never_holds_a_table(trained):
    model, optimizer, _, _ = trained
    assert len(nnx.state(model, ajnnx.Tables)) == 1
    assert not nnx.state(model, nnx.All(nnx.Param, ajnnx.Tables))
    table_shapes = {x.shape for x in jax.tree.leaves(nnx.state(model, ajnnx.Tables))}
    slots = jax.tree.leaves(optimizer.opt_state)
    param_shapes = {x.shape for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert {x.shape for x in slots if x.ndim} <= param_shapes
    assert (16, 2) in table_shapes and (16, 2) not in param_shapes


def test_one_step_is_the_feature_column_calls_and_optax_by_hand():
    model, optimizer = fresh()
    features, labels = batch()
    tables = copy(model.embed.tables.get_value())
    params = copy(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    metrics = STEP(model, optimizer, features, labels)

    emb, new_tables, residuals = fc.input_layer(
        features, [USER, ITEM], tables, optimizer=SPARSE
    )

    def forward(p, e):
        user = e[:, 2:] @ p["user"]["kernel"] + p["user"]["bias"][None]
        item = (
            e[:, :2] @ p["item"]["kernel"] + p["item"]["bias"][None]
        )  # names: item first
        logits = jnp.sum(user * item, axis=1)
        return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

    loss, (d_params, d_emb) = jax.value_and_grad(forward, argnums=(0, 1))(params, emb)
    updates, _ = DENSE.update(d_params, DENSE.init(params), params)
    expected = fc.apply_gradients(new_tables, residuals, d_emb, [USER, ITEM], SPARSE)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert_trees_close(
        nnx.to_pure_dict(nnx.state(model, nnx.Param)),
        optax.apply_updates(params, updates),
        rtol=1e-5,
        atol=1e-7,
    )
    assert_trees_close(model.embed.tables.get_value(), expected, rtol=1e-6, atol=1e-7)


def test_a_call_outside_the_step_is_an_eval(trained):
    model = trained[0]
    before = copy(model.embed.tables.get_value())
    features, _ = batch(7)
    model(features)
    assert_trees_close(model.embed.tables.get_value(), before, rtol=0, atol=0)


def test_resume_is_bit_exact(tmp_path):
    model, optimizer = fresh()
    for s in range(3):
        STEP(model, optimizer, *batch(s))
    with Checkpointer(tmp_path) as checkpoints:
        checkpoints.save(3, nnx.state((model, optimizer)))
        for s in range(3, 6):
            STEP(model, optimizer, *batch(s))
        resumed, resumed_optimizer = fresh()
        target = nnx.state((resumed, resumed_optimizer))
        nnx.update((resumed, resumed_optimizer), checkpoints.restore(target))
    for s in range(3, 6):
        STEP(resumed, resumed_optimizer, *batch(s))
    assert_trees_close(
        nnx.state((resumed, resumed_optimizer)),
        nnx.state((model, optimizer)),
        rtol=0,
        atol=0,
    )


def test_the_step_follows_each_model_and_their_updates_between_calls():
    # The step caches the last (model, optimizer) pair's variables: another
    # pair, or new values put into a model by nnx.update, must be seen.
    step = ajnnx.make_train_step(loss_fn)
    (a, a_opt), (b, b_opt), (alone, alone_opt) = fresh(), fresh(), fresh()
    start = copy(nnx.state((a, a_opt)))
    for s in range(2):
        step(a, a_opt, *batch(s))
        step(b, b_opt, *batch(s))
        STEP(alone, alone_opt, *batch(s))
    for other in ((b, b_opt), (alone, alone_opt)):
        assert_trees_close(nnx.state((a, a_opt)), nnx.state(other), rtol=0, atol=0)
    nnx.update((a, a_opt), start)  # back to step 0, in the same variables
    step(a, a_opt, *batch(0))
    once, once_opt = fresh()
    STEP(once, once_opt, *batch(0))
    assert_trees_close(
        nnx.state((a, a_opt)), nnx.state((once, once_opt)), rtol=0, atol=0
    )


def test_served_scores_equal_eval_scores(trained):
    model = trained[0]
    exported = export.export(ajnnx.tables(model), ajnnx.columns(model))
    directory = tempfile.mkdtemp() + "/v1"
    serving.save(exported, directory)
    built = serving.build(serving.load(directory))
    served = ajnnx.serve(model, built)
    features, _ = raw(11)
    scores = served(serving.prepare(built, features))
    np.testing.assert_array_equal(
        scores, model(fc.prepare(features, ajnnx.columns(model)))
    )
    assert not nnx.state(served, ajnnx.Tables)  # the copy holds no table
    assert isinstance(model.embed, ajnnx.Embed)  # the model is untouched


def test_a_short_last_batch_compiles_nothing_new():
    model, optimizer = fresh()
    traces = []

    def weighted(model, features, labels):
        traces.append(1)  # twice a trace: the shapes, then the step
        y, w = labels
        losses = optax.sigmoid_binary_cross_entropy(model(features), y)
        return jnp.sum(losses * w) / jnp.sum(w)

    step = ajnnx.make_train_step(weighted)
    for seed, size in ((0, BATCH), (1, 5)):
        features, labels = raw(seed, size)
        features, labels, weights = ajnnx.pad_batch(features, labels, BATCH)
        prepared = fc.prepare(features, [USER, ITEM], size=32)
        step(model, optimizer, prepared, (jnp.asarray(labels), jnp.asarray(weights)))
    assert len(traces) == 2
    assert weights.tolist() == [1.0] * 5 + [0.0] * 3


def test_by_name_is_the_concatenation_split():
    embed = ajnnx.Embed([USER, ITEM], SPARSE, rngs=nnx.Rngs(1))
    features, _ = batch()
    whole = embed(features)
    embed.by_name = True
    parts = embed(features)
    assert list(parts) == ["item_embedding", "user_embedding"]  # name order
    np.testing.assert_array_equal(whole, jnp.concatenate(list(parts.values()), 1))


def test_a_linen_embed_through_the_bridge_raises():
    features, _ = batch()
    bridged = nnx.bridge.ToNNX(aj.nn.Embed([ITEM], SPARSE), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="use adaptive_jax.nnx.Embed"):
        bridged.lazy_init(features)


def test_linen_serve_equals_eval():
    class Linen(nn.Module):
        @nn.compact
        def __call__(self, features):
            e = aj.nn.Embed([USER, ITEM], SPARSE, by_name=True)(features)
            return nn.Dense(1)(e["user_embedding"])[:, 0] + e["item_embedding"][:, 0]

    features, _ = batch()
    variables = Linen().init(jax.random.key(0), features)
    tables = variables["embedding_state"]["Embed_0"]["state"]
    exported = export.export(tables, [USER, ITEM])
    served = aj.nn.serve(Linen().apply, serving.build(exported))
    np.testing.assert_array_equal(
        jax.jit(served)(variables["params"], features),
        Linen().apply(variables, features),
    )


@pytest.mark.parametrize(
    "case, match",
    [
        pytest.param("twice", "was called twice", id="embed_called_twice"),
        pytest.param("no_embed", "has no adaptive_jax.nnx.Embed", id="no_embed"),
        pytest.param("labels", r"labels have shape \(7,\)", id="labels_too_short"),
        pytest.param("serve", r"the export lacks the columns \['user", id="serve"),
        pytest.param("summary", "no column tables in the dict", id="summary"),
    ],
)
def test_bad_input_names_the_fix(case, match):
    features, labels = batch()
    model, optimizer = fresh()
    with pytest.raises((ValueError, TypeError), match=match):
        if case == "twice":
            ajnnx.value_and_grad(
                lambda m, f: (
                    jnp.sum(m.embed(f)["user_embedding"])
                    + jnp.sum(m.embed(f)["item_embedding"])
                )
            )(model, features)
        elif case == "no_embed":
            ajnnx.value_and_grad(lambda m: 0.0)(nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
        elif case == "labels":
            STEP(model, optimizer, features, labels[:-1])
        elif case == "serve":
            exported = export.export(
                {"item_embedding": model.embed.tables.get_value()["item_embedding"]},
                [ITEM],
            )
            ajnnx.serve(model, serving.build(exported))
        else:
            fc.summary({"params": {}})


def test_the_two_tower_example_trains_resumes_and_serves(capsys):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "two_tower.py"
    spec = importlib.util.spec_from_file_location("two_tower", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with jax.numpy_dtype_promotion("standard"):  # optax's adam is not strict
        result = example.main(steps=100)
    assert result["resumed"] and result["served_equal"]
    assert result["auc"] > 0.6  # 0.5: the towers learnt nothing
    assert "served scores equal the model's: True" in capsys.readouterr().out


def test_the_pure_step_is_the_step():
    model, optimizer = fresh()
    other, other_optimizer = fresh()
    graphdef, state = nnx.split((other, other_optimizer))
    for s in range(2):
        STEP(model, optimizer, *batch(s))
        state, _ = STEP.pure(graphdef, state, *batch(s))
    nnx.update((other, other_optimizer), state)
    assert_trees_close(
        nnx.state((other, other_optimizer)),
        nnx.state((model, optimizer)),
        rtol=0,
        atol=0,
    )
