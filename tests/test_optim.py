"""FTRL and Adagrad: TensorFlow's known answers, numpy references, sparse = dense."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

from adaptive_jax import optim
from adaptive_jax.table import _dedup

DATA = pathlib.Path(__file__).parent / "data"
DENSE_FTRL = json.loads((DATA / "ftrl_tf_known_answers.json").read_text())
TF = json.loads((DATA / "optim_tf_known_answers.json").read_text())
FLOAT32_TOL = dict(rtol=2e-6, atol=2e-6)


def ftrl_reference(w, n, z, g, lr, lr_power, l1, l2, shrinkage, beta, row=False):
    """FTRL-Proximal in float64 numpy, written from the formula."""
    l2 = l2 + beta / (2 * lr)
    n_new = n + g * g
    z = z + g + 2 * shrinkage * w - (n_new**-lr_power - n**-lr_power) / lr * w
    q = n_new**-lr_power / lr + 2 * l2
    if row:
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        w = np.where(norm > l1, (l1 - norm) / (q * np.maximum(norm, 1e-30)) * z, 0.0)
    else:
        w = np.where(np.abs(z) > l1, (np.sign(z) * l1 - z) / q, 0.0)
    return w, n_new, z


def run_dense(opt, w0, grads):
    params = jnp.asarray(w0, jnp.float32)
    state = opt.init(params)
    after = []
    for grad in grads:
        updates, state = opt.update(jnp.asarray(grad, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        after.append(np.asarray(params))
    return after


# Dense FTRL.


@pytest.mark.parametrize(
    "case", DENSE_FTRL["cases"], ids=["l1_2", "l2_0.1", "shrinkage"]
)
def test_dense_ftrl_equals_tensorflow(case):
    c = case["config"]
    opt = optim.ftrl(
        c["lr"],
        c["lr_power"],
        c["init_acc"],
        c["l1"],
        c["l2"],
        c["l2_shrinkage"],
        case["beta"],
    )
    for got, want in zip(
        run_dense(opt, case["w0"], case["grads"]),
        case["params_after_each_step"],
        strict=True,
    ):
        np.testing.assert_allclose(got, want, **FLOAT32_TOL)


@pytest.mark.parametrize(
    "config",
    [
        dict(lr=0.05, lr_power=-0.5, l1=0.1, l2=0.02, shrinkage=0.0, beta=1.0),
        dict(lr=0.2, lr_power=-0.3, l1=0.05, l2=0.0, shrinkage=0.01, beta=0.0),
        dict(lr=0.1, lr_power=0.0, l1=0.0, l2=0.5, shrinkage=0.0, beta=0.5),
    ],
    ids=["beta", "power_-0.3", "fixed_rate"],
)
def test_dense_ftrl_equals_the_formula(config):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3))
    grads = rng.standard_normal((5, 4, 3))
    opt = optim.ftrl(
        config["lr"],
        config["lr_power"],
        0.1,
        config["l1"],
        config["l2"],
        config["shrinkage"],
        config["beta"],
    )
    got = run_dense(opt, w, grads)
    n, z = np.full_like(w, 0.1), np.zeros_like(w)
    for g, step in zip(grads, got, strict=True):
        w, n, z = ftrl_reference(
            w,
            n,
            z,
            g,
            config["lr"],
            config["lr_power"],
            config["l1"],
            config["l2"],
            config["shrinkage"],
            config["beta"],
        )
        np.testing.assert_allclose(step, w, rtol=1e-5, atol=1e-6)


def test_ftrl_takes_a_learning_rate_schedule_and_chains():
    schedule = optax.exponential_decay(0.2, transition_steps=1, decay_rate=0.5)
    opt = optax.chain(
        optax.clip(0.3), optim.ftrl(schedule, l1_regularization_strength=0.01)
    )
    rng = np.random.default_rng(1)
    w, grads = rng.standard_normal(5), rng.standard_normal((3, 5))
    got = run_dense(opt, w, grads)
    n, z = np.full_like(w, 0.1), np.zeros_like(w)
    for step, (g, after) in enumerate(zip(grads, got, strict=True)):
        lr = 0.2 * 0.5**step
        w, n, z = ftrl_reference(
            w, n, z, np.clip(g, -0.3, 0.3), lr, -0.5, 0.01, 0.0, 0.0, 0.0
        )
        np.testing.assert_allclose(after, w, rtol=1e-5, atol=1e-6)


def test_ftrl_on_a_tree_of_parameters_keeps_its_structure():
    params = {"a": jnp.ones((2, 3)), "b": (jnp.zeros(4),)}
    opt = optim.ftrl(0.1)
    state = opt.init(params)
    assert jax.tree.structure(state.slots.accumulator) == jax.tree.structure(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = jax.jit(opt.update)(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert int(state.count) == 1


def test_ftrl_update_without_params_raises():
    opt = optim.ftrl(0.1)
    state = opt.init(jnp.ones(2))
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(jnp.ones(2), state)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=-0.1),
        dict(learning_rate=0.1, learning_rate_power=0.5),
        dict(learning_rate=0.1, l1_regularization_strength=-1.0),
        dict(learning_rate=0.1, l2_regularization_strength=-1.0),
        dict(learning_rate=0.1, l2_shrinkage_regularization_strength=-1.0),
        dict(learning_rate=0.1, initial_accumulator_value=-0.1),
        dict(learning_rate=0.1, beta=-1.0),
    ],
    ids=["lr", "lr_power", "l1", "l2", "shrinkage", "initial_accumulator", "beta"],
)
def test_bad_ftrl_hyperparameters_raise_naming_them(kwargs):
    name = list(kwargs)[-1]
    with pytest.raises(ValueError, match=name):
        optim.ftrl(**kwargs)


def test_bad_l1_mode_raises():
    with pytest.raises(ValueError, match="l1_mode"):
        optim.Ftrl(0.1, l1_mode="column")


def test_a_nan_gradient_leaves_weight_zero_and_slots_nan_as_tensorflow():
    # TensorFlow's kernel sets w = 0 where |z| > l1 is false, and NaN > l1 is
    # false: the weight becomes 0 (not NaN) and stays 0, its slots NaN.
    case = TF["ftrl_nan"]
    grad = np.array(case["grad"], np.float64).astype(np.float32)
    spec = optim.Ftrl(**{k: v for k, v in TF["ftrl_config"].items()})
    w0 = jnp.asarray(case["w0"], jnp.float32)
    w, slots = spec.update(w0, spec.init_slots(w0), jnp.asarray(grad))
    want = np.array(case["after"], np.float64)
    np.testing.assert_allclose(np.asarray(w), want, **FLOAT32_TOL)
    assert np.asarray(w)[0, 1] == 0.0
    assert np.isnan(np.asarray(slots.linear)[0, 1])


# Row-wise L1 (DeepRec).


def test_row_wise_l1_matches_deeprecs_test():
    # DeepRec's EV FTRL test: from ones, FTRL(0.1, l1=2, l2=1e-5), dim 3.
    spec = optim.Ftrl(
        0.1,
        l1_regularization_strength=2.0,
        l2_regularization_strength=1e-5,
        l1_mode="row",
    )
    table = jnp.ones((2, 3))
    grads = jnp.array([[6.0] * 3, [4.0] * 3])
    table, _ = optim.apply_sparse(
        spec, table, spec.init_slots(table), jnp.array([0, 1]), grads
    )
    np.testing.assert_allclose(
        np.asarray(table), [[0.8282884] * 3, [0.7927219] * 3], rtol=1e-6
    )


def test_row_wise_l1_zeroes_whole_rows_and_equals_the_formula():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 4))
    grads = rng.standard_normal((3, 6, 4)) * np.array(
        [[0.05], [1.0], [0.05], [1.0], [3.0], [0.05]]
    )
    spec = optim.Ftrl(
        0.1,
        l1_regularization_strength=1.0,
        l2_regularization_strength=0.01,
        l1_mode="row",
    )
    value = jnp.asarray(w, jnp.float32)
    slots = spec.init_slots(value)
    n, z = np.full_like(w, 0.1), np.zeros_like(w)
    for g in grads:
        value, slots = spec.update(value, slots, jnp.asarray(g, jnp.float32))
        w, n, z = ftrl_reference(w, n, z, g, 0.1, -0.5, 1.0, 0.01, 0.0, 0.0, row=True)
        np.testing.assert_allclose(np.asarray(value), w, rtol=1e-5, atol=1e-6)
    zero_rows = np.all(np.asarray(value) == 0.0, axis=1)
    assert zero_rows.any() and not zero_rows.all()
    norms = np.linalg.norm(np.asarray(slots.linear), axis=1)
    np.testing.assert_array_equal(zero_rows, norms <= 1.0)


# Sparse form.


def sparse_steps(spec, slots_of):
    table = jnp.asarray(TF["table"], jnp.float32)
    slots = slots_of(table)
    after = []
    for rows, grads in TF["sparse_steps"]:
        table, slots = jax.jit(optim.apply_sparse, static_argnums=0)(
            spec,
            table,
            slots,
            jnp.asarray(rows, jnp.int32),
            jnp.asarray(grads, jnp.float32),
        )
        after.append(np.asarray(table))
    return after


def test_sparse_ftrl_with_repeated_rows_equals_tensorflow():
    spec = optim.Ftrl(**TF["ftrl_config"])
    for got, want in zip(
        sparse_steps(spec, spec.init_slots), TF["sparse_ftrl"], strict=True
    ):
        np.testing.assert_allclose(got, want, **FLOAT32_TOL)


def test_sparse_adagrad_with_repeated_rows_equals_tensorflow():
    spec = optim.Adagrad(**TF["adagrad_config"])
    for got, want in zip(
        sparse_steps(spec, spec.init_slots), TF["sparse_adagrad"], strict=True
    ):
        np.testing.assert_allclose(got, want, **FLOAT32_TOL)


def test_dense_adagrad_equals_tensorflow():
    opt = optim.adagrad(**TF["adagrad_config"])
    got = run_dense(opt, TF["table"], TF["dense_grads"])
    for step, want in zip(got, TF["dense_adagrad"], strict=True):
        np.testing.assert_allclose(step, want, **FLOAT32_TOL)


def test_adagrad_with_epsilon_equals_the_formula():
    rng = np.random.default_rng(3)
    w, grads = rng.standard_normal(4), rng.standard_normal((3, 4))
    got = run_dense(optim.adagrad(0.3, 0.2, epsilon=1e-2), w, grads)
    n = np.full_like(w, 0.2)
    for g, step in zip(grads, got, strict=True):
        n = n + g * g
        w = w - 0.3 * g / (np.sqrt(n) + 1e-2)
        np.testing.assert_allclose(step, w, rtol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        optim.Ftrl(0.1, l1_regularization_strength=0.2, l2_regularization_strength=0.1),
        optim.Ftrl(0.1, l1_regularization_strength=0.5, l1_mode="row"),
        optim.Adagrad(0.3),
    ],
    ids=["ftrl", "ftrl_row", "adagrad"],
)
def test_sparse_and_dense_forms_agree_on_the_rows_they_touch(spec):
    rng = np.random.default_rng(4)
    table = jnp.asarray(rng.standard_normal((10, 3)), jnp.float32)
    rows = jnp.array([1, 4, 1, 7, 4, 4])
    grads = jnp.asarray(rng.standard_normal((6, 3)), jnp.float32)
    sparse_table, sparse_slots = optim.apply_sparse(
        spec, table, spec.init_slots(table), rows, grads
    )
    dense_grad = jnp.zeros_like(table).at[rows].add(grads)
    dense_table, dense_slots = spec.update(table, spec.init_slots(table), dense_grad)
    touched = np.array([1, 4, 7])
    np.testing.assert_allclose(
        np.asarray(sparse_table)[touched], np.asarray(dense_table)[touched], rtol=1e-6
    )
    for a, b in zip(sparse_slots, dense_slots, strict=True):
        np.testing.assert_allclose(
            np.asarray(a)[touched], np.asarray(b)[touched], rtol=1e-6
        )
    untouched = np.setdiff1d(np.arange(10), touched)
    np.testing.assert_array_equal(
        np.asarray(sparse_table)[untouched], np.asarray(table)[untouched]
    )


def test_split_update_trains_each_entrys_own_table_as_the_formula_says():
    # Two tables (per-coordinate and per-row L1) in one pass: each entry trains
    # the table where its row is in range, repeats summed, the rest untouched.
    rng = np.random.default_rng(7)
    coord = optim.Ftrl(0.1, l1_regularization_strength=0.05)
    row = optim.Ftrl(0.2, l1_regularization_strength=0.3, l1_mode="row")
    a = rng.standard_normal((6, 3)).astype(np.float32)
    b = rng.standard_normal((9, 3)).astype(np.float32)
    k = 40
    to_a = rng.random(k) < 0.5
    rows_a = np.where(to_a, rng.integers(0, 6, k), 6)
    rows_b = np.where(to_a, -1, rng.integers(0, 10, k))  # 9: out of range, skipped
    grads = rng.standard_normal((k, 3)).astype(np.float32)

    def split(a, b, grads):
        return optim.apply_sparse_split(
            (
                (coord, a, coord.init_slots(a), jnp.asarray(rows_a, jnp.int32)),
                (row, b, row.init_slots(b), jnp.asarray(rows_b, jnp.int32)),
            ),
            grads,
        )

    (new_a, slots_a), (new_b, slots_b) = jax.jit(split)(a, b, grads)
    for spec, table, rows, new, slots, is_row in (
        (coord, a, rows_a, new_a, slots_a, False),
        (row, b, rows_b, new_b, slots_b, True),
    ):
        n = table.shape[0]
        g = np.zeros((n, 3))
        np.add.at(g, rows[(rows >= 0) & (rows < n)], grads[(rows >= 0) & (rows < n)])
        touched = np.isin(np.arange(n), rows)
        w, acc, z = ftrl_reference(
            table.astype(np.float64),
            0.1,
            0.0,
            g,
            spec.learning_rate,
            -0.5,
            spec.l1_regularization_strength,
            0.0,
            0.0,
            0.0,
            row=is_row,
        )
        np.testing.assert_allclose(np.asarray(new)[touched], w[touched], **FLOAT32_TOL)
        np.testing.assert_allclose(
            np.asarray(slots.linear)[touched], z[touched], **FLOAT32_TOL
        )
        np.testing.assert_array_equal(np.asarray(new)[~touched], table[~touched])
        assert touched.sum() >= 4  # both tables are trained, several rows each


def test_padding_and_out_of_range_rows_touch_nothing():
    spec = optim.Adagrad(0.5)
    table = jnp.ones((4, 2))
    rows = jnp.array([0, -1, 4, 2])
    valid = jnp.array([True, True, True, False])
    new, _ = optim.apply_sparse(
        spec, table, spec.init_slots(table), rows, jnp.ones((4, 2)), valid=valid
    )
    changed = np.any(np.asarray(new) != 1.0, axis=1)
    assert changed.tolist() == [True, False, False, False]


def test_split_update_skips_and_counts_rows_whose_update_is_not_finite():
    # A NaN gradient reaches row 1 of table a and row 2 of table b (twice: one
    # row); those rows keep value and slots, the other rows train.
    spec = optim.Ftrl(0.1)
    a, b = jnp.ones((4, 2)), jnp.full((3, 2), 2.0)
    rows_a = jnp.array([1, 0, 4, 4, 4], jnp.int32)  # 4: not a's
    rows_b = jnp.array([-1, -1, 2, 2, 0], jnp.int32)
    grads = jnp.array(
        [[np.nan, 1.0], [1.0, 1.0], [np.inf, 0.0], [1.0, 1.0], [1.0, 1.0]]
    )
    ((new_a, slots_a), (new_b, slots_b)), skipped = optim.sparse_update_split(
        (
            (spec, a, spec.init_slots(a), rows_a),
            (spec, b, spec.init_slots(b), rows_b),
        ),
        grads,
    )
    assert int(skipped) == 2
    changed_a = np.any(np.asarray(new_a) != 1.0, axis=1).tolist()
    changed_b = np.any(np.asarray(new_b) != 2.0, axis=1).tolist()
    assert changed_a == [True, False, False, False]
    assert changed_b == [True, False, False]
    for leaf in jax.tree.leaves((new_a, slots_a, new_b, slots_b)):
        assert np.isfinite(np.asarray(leaf)).all()


def test_checked_mode_names_the_row_out_of_range():
    spec = optim.Adagrad(0.5)
    table = jnp.ones((4, 2))
    step = checkify.checkify(
        jax.jit(
            lambda t, s, r, g: optim.apply_sparse(spec, t, s, r, g, check_rows=True)
        )
    )
    error, _ = step(table, spec.init_slots(table), jnp.array([0, 9]), jnp.ones((2, 2)))
    with pytest.raises(
        checkify.JaxRuntimeError, match="row id 9 at entry 1 is outside"
    ):
        error.throw()
    error, _ = step(table, spec.init_slots(table), jnp.array([0, 3]), jnp.ones((2, 2)))
    error.throw()  # in range: no error


def test_an_empty_batch_changes_nothing():
    spec = optim.Ftrl(0.1)
    table = jnp.ones((4, 2))
    new, slots = optim.apply_sparse(
        spec, table, spec.init_slots(table), jnp.zeros(0, jnp.int32), jnp.zeros((0, 2))
    )
    assert new.tolist() == table.tolist()


def test_grads_of_the_wrong_shape_raise():
    spec = optim.Adagrad(0.5)
    table = jnp.ones((4, 2))
    with pytest.raises(ValueError, match=r"grads \[k, 2\]"):
        optim.apply_sparse(
            spec, table, spec.init_slots(table), jnp.array([0, 1]), jnp.ones((2, 3))
        )


def test_sparse_update_runs_in_place():
    spec = optim.Ftrl(0.1)
    table = jnp.ones((4096, 8))
    slots = spec.init_slots(table)
    fn = jax.jit(optim.apply_sparse, static_argnums=0, donate_argnums=(1, 2))
    text = (
        fn.lower(spec, table, slots, jnp.arange(64), jnp.ones((64, 8)))
        .compile()
        .as_text()
    )
    copies = [
        line for line in text.splitlines() if "f32[4096,8]" in line and " copy(" in line
    ]
    assert copies == []


# Warm starts: slots that reproduce a given weight.


@pytest.mark.parametrize("mode", ["coordinate", "row"])
def test_warm_slots_reproduce_the_weight(mode):
    spec = optim.Ftrl(
        0.05,
        l1_regularization_strength=0.3,
        l2_regularization_strength=0.2,
        beta=0.5,
        l1_mode=mode,
    )
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((5, 4)).astype(np.float32)
    weight[2] = 0.0
    slots = spec.warm_slots(jnp.asarray(weight))
    np.testing.assert_allclose(np.asarray(slots.accumulator), 0.1)
    np.testing.assert_allclose(
        np.asarray(spec.weight_of(slots)), weight, rtol=1e-5, atol=1e-7
    )


def test_set_rows_writes_given_rows_only():
    spec = optim.Ftrl(0.1)
    table = jnp.zeros((4, 2))
    slots = spec.init_slots(table)
    warm = spec.warm_slots(jnp.array([[1.0, -2.0], [0.5, 0.5]]))
    slots = optim.set_rows(
        slots, jnp.array([3, -1]), warm
    )  # -1: skipped, not the last row
    np.testing.assert_allclose(np.asarray(slots.linear)[3], np.asarray(warm.linear)[0])
    assert np.asarray(slots.linear)[:3].tolist() == [[0.0, 0.0]] * 3


# Summing repeats.


def test_first_occurrence_matches_a_dict():
    rng = np.random.default_rng(6)
    rows = rng.integers(0, 50, 1000)
    valid = rng.random(1000) < 0.9
    got = np.asarray(
        optim.first_occurrence(jnp.asarray(rows, jnp.int32), jnp.asarray(valid))
    )
    seen = {}
    want = []
    for i, (row, ok) in enumerate(zip(rows.tolist(), valid.tolist(), strict=True)):
        want.append(seen.setdefault(row, i) if ok else -1)
    assert got.tolist() == want


def test_first_occurrence_of_64_bit_keys_matches_a_dict():
    """Keys that share a word but not both are told apart."""
    rng = np.random.default_rng(7)
    hi = rng.integers(0, 4, 1000).astype(np.uint32)
    lo = rng.integers(0, 30, 1000).astype(np.uint32)
    valid = rng.random(1000) < 0.9
    got = np.asarray(
        _dedup.first_occurrence((jnp.asarray(hi), jnp.asarray(lo)), jnp.asarray(valid))
    )
    seen = {}
    want = [
        seen.setdefault((h, w), i) if ok else -1
        for i, (h, w, ok) in enumerate(
            zip(hi.tolist(), lo.tolist(), valid.tolist(), strict=True)
        )
    ]
    assert got.tolist() == want
