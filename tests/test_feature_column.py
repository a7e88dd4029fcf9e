"""Adaptive columns: the seed program, routing, migration, combiners, fallback."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids, optim
from adaptive_jax.column import initializers
from adaptive_jax.ids import hashing, sparse

ROOT = pathlib.Path(__file__).parent.parent
FTRL = dict(
    learning_rate=0.1, l1_regularization_strength=2.0, l2_regularization_strength=1e-5
)


def ftrl_step(w, n, z, g, lr=0.1, l1=2.0, l2=1e-5, row=False):
    """One FTRL-Proximal step in float64, from the formula (TensorFlow's, or
    DeepRec's row-wise L1 over the last axis)."""
    n_new = n + g * g
    z = z + g - (np.sqrt(n_new) - np.sqrt(n)) / lr * w
    q = np.sqrt(n_new) / lr + 2 * l2
    if row:
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        return np.where(norm > l1, (l1 - norm) / (q * norm) * z, 0.0), n_new, z
    return np.where(np.abs(z) > l1, (np.sign(z) * l1 - z) / q, 0.0), n_new, z


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The seed program.


def seed_expected():
    """The seed program's fourth-run embeddings and loss, derived by hand from
    DeepRec's rules: buckets Fingerprint64(str(id)) % 100; ids of mask 1 copy
    their bucket's value (ones) into a dynamic row on first insertion, then
    DeepRec's row-wise FTRL; the others TensorFlow's FTRL on their bucket, with
    the gradients of a bucket's ids summed. d loss / d emb = 2 everywhere."""
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    mask = [1, 0, 1, 0, 1, 0, 0, 1, 0, 1]
    buckets = hashing.to_hash_bucket_fast(np.array(values), 100)
    static = {b: (np.ones(3), np.full(3, 0.1), np.zeros(3)) for b in buckets}
    dynamic = {
        v: (np.ones(3), np.full(3, 0.1), np.zeros(3))
        for v, m in zip(values, mask, strict=True)
        if m
    }
    for _ in range(3):  # the fourth run fetches emb before its own update
        counts = {}
        for b, m in zip(buckets, mask, strict=True):
            if not m:
                counts[b] = counts.get(b, 0) + 1
        for b, c in counts.items():
            static[b] = ftrl_step(*static[b], np.full(3, 2.0 * c))
        for v in dynamic:
            dynamic[v] = ftrl_step(*dynamic[v], np.full(3, 2.0), row=True)
    emb = np.array(
        [
            dynamic[v][0] if m else static[b][0]
            for v, m, b in zip(values, mask, buckets, strict=True)
        ]
    )
    return emb, float(np.sum(emb * 2.0))


def test_seed_example_prints_deeprecs_numbers(capsys):
    emb, loss = load_example("seed_example").main()
    want_emb, want_loss = seed_expected()
    np.testing.assert_allclose(emb, want_emb, rtol=2e-6)
    np.testing.assert_allclose(loss, want_loss, rtol=2e-6)
    # The numbers themselves, as the example prints them.
    dynamic, static = 0.56025726, 0.51851094
    np.testing.assert_allclose(
        emb[:, 0],
        [dynamic, static] * 2 + [dynamic, static, static, dynamic, static, dynamic],
        rtol=1e-6,
    )
    assert abs(loss - 32.363041) < 1e-4
    printed = capsys.readouterr().out
    assert "0.560257" in printed and "32.36304" in printed


def test_seed_example_gives_the_same_with_x64_on():
    emb_off, loss_off = load_example("seed_example").main()
    with jax.enable_x64(True):
        emb_on, loss_on = load_example("seed_example").main()
    np.testing.assert_array_equal(emb_on, emb_off)
    assert loss_on == loss_off


# Helpers for small columns.


def column_setup(
    capacity=8, buckets=10, dim=2, migration="deeprec", optimizer=None, combiner="mean"
):
    option = aj.EmbeddingVariableOption(capacity=capacity)
    categorical = fc.categorical_column_with_adaptive_embedding(
        "c", buckets, dtype="int64", ev_option=option, migration=migration
    )
    column = fc.embedding_column(
        categorical, dim, combiner, initializers.random_normal(stddev=1.0)
    )
    opt = optimizer or optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(1))
    return column, opt, state


def step(column, opt, state, rows, mask, d_emb=None, weights=None):
    features = {"c": sparse.from_ragged(rows, weights=weights)}
    masks = {"c": np.array(mask)}
    emb, state, residuals = fc.input_layer(
        features, [column], state, optimizer=opt, adaptive_mask_tensors=masks
    )
    grad = jnp.ones_like(emb) if d_emb is None else d_emb
    return emb, fc.apply_gradients(state, residuals, grad, [column], opt), residuals


def bucket_of(value, buckets=10):
    return int(hashing.to_hash_bucket_fast(np.array([value]), buckets)[0])


# Routing.


def test_ids_go_where_their_mask_says():
    column, opt, state = column_setup()
    _, state, residuals = step(column, opt, state, [[11], [12], [13]], [1, 0, 1])
    table = state["c_embedding"].dynamic.table
    assert aj.table.lookup(table, ids.from_numpy([11, 12, 13])).tolist() == [0, -1, 1]
    r = residuals["c_embedding"]
    assert np.asarray(r.dynamic_rows)[:3].tolist() == [0, 8, 1]  # 8: capacity, none
    assert np.asarray(r.static_rows)[:3].tolist() == [10, bucket_of(12), 10]


def test_mask_zero_serves_the_bucket_even_for_an_id_with_a_row():
    column, opt, state = column_setup()
    _, state, _ = step(column, opt, state, [[11]], [1], d_emb=jnp.zeros((1, 2)))
    static = np.asarray(state["c_embedding"].static.values)
    emb, _, _ = step(column, opt, state, [[11]], [0])
    np.testing.assert_allclose(np.asarray(emb)[0], static[bucket_of(11)], rtol=1e-6)


# Migration.


def test_a_promoted_id_first_outputs_its_buckets_learnt_value():
    column, opt, state = column_setup()
    for _ in range(3):  # the bucket learns while the id is static
        _, state, _ = step(column, opt, state, [[11], [21]], [0, 0])
    learnt = np.asarray(state["c_embedding"].static.values)[bucket_of(11)]
    assert not np.allclose(
        learnt,
        np.asarray(column_setup()[2]["c_embedding"].static.values)[bucket_of(11)],
    )
    emb, state, _ = step(column, opt, state, [[11]], [1])
    np.testing.assert_allclose(np.asarray(emb)[0], learnt, rtol=1e-6)


def test_without_migration_a_promoted_id_starts_from_the_default_values():
    column, opt, state = column_setup(migration="none")
    for _ in range(2):  # the bucket learns while the id is static
        _, state, _ = step(column, opt, state, [[11], [21]], [0, 0])
    defaults = np.asarray(state["c_embedding"].default_values)
    assert defaults.shape == (4096, 2)  # InitializerOption's default_value_dim
    emb, state, _ = step(column, opt, state, [[11], [4096 + 7]], [1, 1])
    np.testing.assert_array_equal(np.asarray(emb), defaults[[11, 7]])
    learnt = np.asarray(state["c_embedding"].static.values)[bucket_of(11)]
    assert not np.allclose(np.asarray(emb)[0], learnt)


def test_warm_migration_keeps_the_copied_value_under_a_zero_gradient():
    column, opt, state = column_setup(migration="warm")
    emb, state, _ = step(column, opt, state, [[11]], [1], d_emb=jnp.zeros((1, 2)))
    again, _, _ = step(column, opt, state, [[11]], [1])
    np.testing.assert_allclose(np.asarray(again), np.asarray(emb), rtol=1e-5)


def test_deeprec_migration_rebuilds_the_weight_from_fresh_slots():
    # Fresh slots (z = 0) under a zero gradient give FTRL's weight 0: the copied
    # value is lost, as in DeepRec and TensorFlow.
    column, opt, state = column_setup(migration="deeprec")
    emb, state, _ = step(column, opt, state, [[11]], [1], d_emb=jnp.zeros((1, 2)))
    assert np.all(np.asarray(emb) != 0)
    again, _, _ = step(column, opt, state, [[11]], [1])
    assert np.all(np.asarray(again) == 0)


def test_copy_migration_equals_the_buckets_own_next_update():
    # With l1 = 0, DeepRec's row-wise FTRL and TensorFlow's coincide, so the
    # promoted row (the bucket's value and slots) must update as the bucket would.
    spec = optim.Ftrl(0.1, l2_regularization_strength=0.01)
    column, opt, state = column_setup(migration="copy", optimizer=spec)
    for _ in range(2):
        _, state, _ = step(column, opt, state, [[11]], [0])
    static = state["c_embedding"].static
    b = bucket_of(11)
    grad = jnp.array([[0.7, -1.3]])
    bucket_next, _ = spec.update(
        static.values[b : b + 1],
        type(static.slots)(*(s[b : b + 1] for s in static.slots)),
        grad,
    )
    _, state, _ = step(column, opt, state, [[11]], [1], d_emb=grad)
    row = int(
        aj.table.lookup(state["c_embedding"].dynamic.table, ids.from_numpy([11]))[0]
    )
    np.testing.assert_allclose(
        np.asarray(state["c_embedding"].dynamic.values)[row],
        np.asarray(bucket_next)[0],
        rtol=1e-6,
    )


def test_no_gradient_flows_into_the_static_table_through_the_copy():
    column, opt, state = column_setup()
    before = np.asarray(state["c_embedding"].static.values)
    _, state, _ = step(column, opt, state, [[11], [11]], [1, 1])
    np.testing.assert_array_equal(
        np.asarray(state["c_embedding"].static.values), before
    )


# Combiners, repeats, fallback.


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_combiners_equal_a_numpy_reference(combiner):
    categorical = fc.categorical_column_with_hash_bucket("c", 7, dtype="int64")
    column = fc.embedding_column(
        categorical, 3, combiner, initializers.random_normal(stddev=1.0)
    )
    opt = optim.ftrl(0.1)
    state = fc.init_state([column], opt, jax.random.key(2))
    rows = [[1, 2, 2], [], [5], [3, 4, 9, 9, 1]]
    weights = [[0.5, 1.0, 2.0], [], [3.0], [1.0, -0.5, 0.25, 1.0, 2.0]]
    features = {"c": sparse.from_ragged(rows, weights=weights)}
    emb, _, _ = fc.input_layer(features, [column], state, optimizer=opt)
    table = np.asarray(state["c_embedding"].static.values)
    want = []
    for ids_of_row, w in zip(rows, weights, strict=True):
        w = np.array(w)
        e = (
            table[hashing.to_hash_bucket_fast(np.array(ids_of_row, np.int64), 7)]
            if ids_of_row
            else np.zeros((0, 3))
        )
        total = (w[:, None] * e).sum(0) if ids_of_row else np.zeros(3)
        denominator = {"sum": 1.0, "mean": w.sum(), "sqrtn": np.sqrt((w * w).sum())}[
            combiner
        ]
        want.append(total / denominator if ids_of_row else np.zeros(3))
    np.testing.assert_allclose(np.asarray(emb), np.array(want), rtol=1e-5, atol=1e-6)


def test_repeated_ids_share_a_row_and_sum_their_gradients():
    spec = optim.Ftrl(0.1)
    column, opt, state = column_setup(optimizer=spec, combiner="sum")
    d_emb = jnp.array([[1.0, 2.0], [0.5, 0.5]])
    emb, state, _ = step(column, opt, state, [[11, 11], [11]], [1, 1, 1], d_emb=d_emb)
    dynamic = state["c_embedding"].dynamic
    assert int(aj.table.num_live(dynamic.table)) == 1
    start = np.asarray(emb)[1]  # one id: its row's starting value
    want, _, _ = ftrl_step(
        start[None],
        np.full((1, 2), 0.1),
        np.zeros((1, 2)),
        np.array([[2.5, 4.5]]),
        l1=0.0,
        l2=0.0,
        row=True,
    )
    np.testing.assert_allclose(np.asarray(dynamic.values)[0], want[0], rtol=1e-5)


def test_a_full_dynamic_table_falls_back_to_the_static_bucket_and_counts():
    column, opt, state = column_setup(capacity=2)
    static_before = np.asarray(state["c_embedding"].static.values)
    emb, state, residuals = step(column, opt, state, [[11], [12], [13]], [1, 1, 1])
    dynamic = state["c_embedding"].dynamic
    assert int(dynamic.table.overflows) == 1
    np.testing.assert_allclose(
        np.asarray(emb)[2], static_before[bucket_of(13)], rtol=1e-6
    )
    assert int(np.asarray(residuals["c_embedding"].static_rows)[2]) == bucket_of(13)
    static_after = np.asarray(state["c_embedding"].static.values)
    assert not np.allclose(static_after[bucket_of(13)], static_before[bucket_of(13)])


def test_string_columns_use_tensorflows_buckets_and_deeprecs_keys():
    categorical = fc.categorical_column_with_adaptive_embedding("s", 50, dtype="string")
    column = fc.embedding_column(categorical, 2)
    features = {"s": np.array([["a", "b"], ["c", ""]])}
    prepared = fc.prepare(features, [column], adaptive_mask_tensors={"s": [1, 0, 1]})[
        "s_embedding"
    ]
    assert (
        np.asarray(prepared.buckets)[:3].tolist()
        == hashing.to_hash_bucket_fast(["a", "b", "c"], 50).tolist()
    )
    keys = ids.to_numpy(prepared.ids.values)[:3]
    assert keys.tolist() == hashing.string_to_key(["a", "b", "c"]).tolist()


def test_a_plain_dynamic_column_starts_keys_from_deeprecs_default_values():
    option = aj.EmbeddingVariableOption(
        capacity=4, init_option=aj.InitializerOption(default_value_dim=3)
    )
    column = fc.embedding_column(
        fc.categorical_column_with_embedding("d", dtype="int64", ev_option=option), 2
    )
    opt = optim.ftrl(0.1)
    state = fc.init_state([column], opt, jax.random.key(3))
    defaults = np.asarray(state["d_embedding"].default_values)
    emb, state, _ = fc.input_layer(
        {"d": sparse.from_ragged([[7], [-1], [9]])}, [column], state, optimizer=opt
    )
    want = defaults[[7 % 3, (2**64 - 1) % 3, 9 % 3]]
    np.testing.assert_allclose(np.asarray(emb), want, rtol=1e-6)


def test_columns_concatenate_in_the_order_of_their_names():
    b = fc.embedding_column(
        fc.categorical_column_with_hash_bucket("b", 5, dtype="int64"),
        2,
        initializer=initializers.ones(),
    )
    a = fc.embedding_column(
        fc.categorical_column_with_hash_bucket("a", 5, dtype="int64"),
        3,
        initializer=initializers.zeros(),
    )
    opt = optim.ftrl(0.1)
    state = fc.init_state([b, a], opt, jax.random.key(0))
    features = {"a": sparse.from_ragged([[1]]), "b": sparse.from_ragged([[1]])}
    emb, _, _ = fc.input_layer(features, [b, a], state, optimizer=opt)
    assert np.asarray(emb).tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]


def test_the_step_jits_on_prepared_features_and_compiles_once():
    column, opt, state = column_setup()

    @jax.jit
    def train(state, features):
        emb, state, residuals = fc.input_layer(features, [column], state, optimizer=opt)
        return fc.apply_gradients(state, residuals, jnp.ones_like(emb), [column], opt)

    for rows in ([[1], [2, 3]], [[4, 5], [6]]):
        features = fc.prepare(
            {"c": sparse.from_ragged(rows)},
            [column],
            adaptive_mask_tensors={"c": [1, 0, 1]},
        )
        state = train(state, features)
    assert train._cache_size() == 1
    assert int(state["c_embedding"].step) == 2


# Bad input: named, before any state changes.


def test_a_mask_of_the_wrong_length_raises_naming_the_column():
    column, opt, state = column_setup()
    with pytest.raises(
        ValueError,
        match=r"column 'c': adaptive_mask_tensors\['c'\] has shape \(2,\), "
        r"expected \(3,\)",
    ):
        fc.input_layer(
            {"c": sparse.from_ragged([[1], [2, 3]])},
            [column],
            state,
            optimizer=opt,
            adaptive_mask_tensors={"c": [1, 0]},
        )


def test_an_adaptive_column_without_mask_or_policy_raises_naming_it():
    column, opt, state = column_setup()
    with pytest.raises(ValueError, match="column 'c' is adaptive"):
        fc.input_layer({"c": sparse.from_ragged([[1]])}, [column], state, optimizer=opt)


def test_a_missing_feature_raises_naming_the_column():
    column, opt, state = column_setup()
    with pytest.raises(ValueError, match="column 'c': feature 'c' is missing"):
        fc.input_layer({"other": [[1]]}, [column], state, optimizer=opt)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fc.embedding_column(fc.categorical_column_with_hash_bucket("k", 4), 0),
        lambda: fc.embedding_column(
            fc.categorical_column_with_hash_bucket("k", 4), 2, "max"
        ),
        lambda: fc.categorical_column_with_hash_bucket("k", 0),
        lambda: fc.categorical_column_with_adaptive_embedding("k", 4, migration="move"),
        lambda: fc.categorical_column_with_hash_bucket("k", 4, dtype="float32"),
    ],
    ids=["dimension_0", "combiner_max", "hash_bucket_size_0", "migration", "dtype"],
)
def test_bad_column_settings_raise_naming_the_column(make):
    with pytest.raises(ValueError, match="column 'k'"):
        make()


def test_ids_of_the_wrong_kind_raise_naming_the_column():
    column, opt, state = column_setup()
    with pytest.raises(
        ValueError, match="column 'c' has dtype int64, but its ids are strings"
    ):
        fc.prepare({"c": [["x"]]}, [column], adaptive_mask_tensors={"c": [1]})


def test_a_mask_for_a_column_that_is_not_adaptive_raises():
    column = fc.embedding_column(
        fc.categorical_column_with_hash_bucket("h", 4, dtype="int64"), 2
    )
    with pytest.raises(ValueError, match="no adaptive column has key 'h'"):
        fc.prepare({"h": [[1]]}, [column], adaptive_mask_tensors={"h": [1]})
