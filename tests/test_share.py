"""Migration "fitted": the share of its bucket a promoted row starts from,
measured on a control group of ids that never get the copy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax.column import _share, stacking

DIM, BUCKETS, LR = 3, 1, 0.5
OPT = aj.optim.ftrl(LR)


def column(key="u", buckets=BUCKETS, optimizer_dim=DIM):
    categorical = fc.categorical_column_with_adaptive_embedding(
        key,
        buckets,
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=4096, init_option=aj.InitializerOption(default_value_dim=16)
        ),
    )
    return fc.embedding_column(categorical, optimizer_dim, "sum")


def held_out_keys(values, salt=0):
    keys = ids_lib.from_numpy(np.asarray(values, np.int64) ^ np.int64(salt))
    rows = jnp.zeros(len(values), jnp.int32)
    return np.asarray(_share.held_out(keys, rows, (salt,)))


# The formula.


@pytest.mark.parametrize(
    "sums, variance, expected",
    [
        ([0.6, 2.0, 900.0, 16.0], 0.0, 0.3 * 0.5),  # slope 0.3, halved at 16 ids
        ([1.0, 2.0, 900.0, 48.0], 0.0, 0.5 * 0.75),
        # Rows spread about the slope: two standard errors (of 16 ids) off.
        ([0.6, 2.0, 900.0, 16.0], 0.04, (0.3 - 2 * np.sqrt(0.04 / 15)) * 0.5),
        ([0.6, 2.0, 900.0, 16.0], 1.0, 0.0),  # spread past the slope: nothing
        ([-1.0, 2.0, 900.0, 160.0], 0.0, 0.0),  # control rows point away: nothing
        ([5.0, 2.0, 900.0, 16.0], 0.0, 0.5),  # beyond the bucket: a whole copy at most
        ([0.6, 2.0, 900.0, 1.0], 0.0, 0.0),  # one control id: no spread known
        ([0.6, 2.0, 900.0, 0.0], 0.0, 0.0),  # no control id promoted: nothing
        ([0.0, 0.0, 0.0, 0.0], 0.0, 0.0),  # no evidence
    ],
    ids=[
        "slope",
        "more_ids",
        "spread",
        "spread_past_slope",
        "negative",
        "clipped_at_one",
        "one_id",
        "no_id",
        "none",
    ],
)
def test_the_share_is_the_lower_end_of_the_slope_shrunk_by_its_evidence(
    sums, variance, expected
):
    along, norm = sums[0], sums[1]
    slope = along / norm if norm else 0.0
    squares = norm * (variance + slope * slope)  # the weighted variance's sums
    evidence = _share.ShareEvidence(
        jnp.asarray([sums], jnp.float32), jnp.asarray([squares], jnp.float32)
    )
    assert float(_share.shares(evidence)[0]) == pytest.approx(expected, rel=1e-5)


def test_one_key_in_holdout_is_a_control_and_a_salt_does_not_change_which():
    values = np.arange(64_000)
    plain = held_out_keys(values)
    assert plain.mean() == pytest.approx(1 / _share.HOLDOUT, rel=0.05)
    salt = int(stacking.salt("member"))
    np.testing.assert_array_equal(held_out_keys(values, salt), plain)


def test_record_adds_the_control_entries_read_per_feature():
    # Arrange: 6 entries of a 2-feature stacked column (rows example-major).
    rng = np.random.default_rng(0)
    pool = np.arange(400)
    held, kept = pool[held_out_keys(pool)], pool[~held_out_keys(pool)]
    values = np.array([held[0], kept[0], held[1], held[2], kept[1], held[3]])
    control = held_out_keys(values)
    rows = rng.normal(size=(6, DIM)).astype(np.float32)
    buckets = rng.normal(size=(6, DIM)).astype(np.float32)
    read = np.array([1, 1, 0, 1, 1, 1], bool)
    new = np.array([1, 0, 1, 1, 0, 0], bool)
    row_ids = np.arange(6, dtype=np.int32)  # feature = row % 2
    evidence = _share.ShareEvidence.create(2)

    # Act
    out = _share.record(
        evidence,
        jnp.asarray(rows),
        jnp.asarray(buckets),
        jnp.asarray(read),
        jnp.asarray(new),
        ids_lib.from_numpy(values),
        jnp.asarray(row_ids),
        (0, 0),
    )

    # Assert: a numpy reference from the definition.
    expected = np.zeros((2, 5))
    for i in range(6):
        f = i % 2
        if read[i] and control[i]:
            along, norm = rows[i] @ buckets[i], buckets[i] @ buckets[i]
            expected[f, [0, 1, 2, 4]] += [along, norm, 1, along**2 / norm]
        expected[f, 3] += new[i] and control[i]
    assert control.any(), "the keys must hold a control key"
    np.testing.assert_allclose(np.asarray(out.sums), expected[:, :4], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.squares), expected[:, 4], rtol=1e-5)


def test_a_promoted_control_key_counts_once_however_often_its_batch_repeats_it():
    # Arrange: one control key promoted in 5 entries of a batch (a feature of
    # a few values), another in 1, and a treated key in 3.
    pool = np.arange(400)
    held, kept = pool[held_out_keys(pool)], pool[~held_out_keys(pool)]
    values = np.array([held[0]] * 5 + [held[1]] + [kept[0]] * 3)
    n = len(values)
    ones = jnp.ones((n, DIM), jnp.float32)
    new = jnp.ones(n, bool)

    # Act
    out = _share.record(
        _share.ShareEvidence.create(1),
        ones,
        ones,
        jnp.ones(n, bool),
        new,
        ids_lib.from_numpy(values),
        jnp.zeros(n, jnp.int32),
        (0,),
    )

    # Assert: 6 control entries read, 2 control keys promoted.
    np.testing.assert_allclose(np.asarray(out.sums)[0], [6 * DIM, 6 * DIM, 6, 2])


# A promoted row's first value, and what its slots keep.


def promote(state, col, keys):
    ids = {"u": aj.sparse.from_dense(np.asarray(keys, np.int64))}
    mask = {"u": np.ones(len(keys), np.int32)}
    return fc.input_layer(ids, [col], state, optimizer=OPT, adaptive_mask_tensors=mask)


def test_a_promoted_row_starts_from_its_default_plus_its_share_of_the_bucket():
    # Arrange: evidence that gives a share of 0.25; a control key and another.
    col = column()
    state = fc.init_state([col], OPT, jax.random.key(0))
    name = col.name
    share = _share.ShareEvidence(  # slope 0.5 without spread, halved at 16 ids
        jnp.asarray([[0.5, 1.0, 900.0, 16.0]], jnp.float32), jnp.asarray([0.25])
    )
    state = {name: state[name].replace(share=share)}
    candidates = np.arange(1, 400)
    control = int(candidates[held_out_keys(candidates)][0])
    treated = int(candidates[~held_out_keys(candidates)][0])
    bucket = np.asarray(state[name].static.values[0])
    defaults = np.asarray(state[name].default_values)

    # Act
    emb, state, residuals = promote(state, col, [treated, control])

    # Assert
    emb = np.asarray(emb)
    np.testing.assert_allclose(emb[0], defaults[treated % 16] + 0.25 * bucket, 1e-6)
    np.testing.assert_allclose(emb[1], defaults[control % 16], rtol=1e-6)

    # Act: one FTRL step, gradient g on both rows.
    g = np.array([[0.3, -0.2, 0.1], [0.3, -0.2, 0.1]], np.float32)
    state = fc.apply_gradients(state, residuals, jnp.asarray(g), [col], OPT)
    after, _, _ = promote(state, col, [treated, control])

    # Assert: TensorFlow's FTRL from the slots "fitted" gives (a numpy
    # reference): the share stays, the default fades as under "none".
    n0, n1 = 0.1, 0.1 + g[0] ** 2
    kept = 1 - np.sqrt(n0 / n1)
    step = LR * g[0] / np.sqrt(n1)
    np.testing.assert_allclose(
        np.asarray(after)[0],
        0.25 * bucket + kept * defaults[treated % 16] - step,
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(after)[1], kept * defaults[control % 16] - step, rtol=1e-5
    )


def test_the_share_is_learnt_from_control_rows_that_hold_part_of_their_bucket():
    # Arrange: rare ids (mask 0) pull their bucket to B, promoted ids (mask 1)
    # their rows to 0.4 * B: control rows end at 0.4 B, so the share is 0.4.
    col = column()
    state = fc.init_state([col], OPT, jax.random.key(1))
    target = np.array([1.0, -2.0, 0.5], np.float32)

    @jax.jit
    def step(state, prepared, targets):
        emb, state, residuals = fc.input_layer(prepared, [col], state, optimizer=OPT)
        return fc.apply_gradients(state, residuals, emb - targets, [col], OPT)

    rng = np.random.default_rng(3)
    for _ in range(400):
        keys = rng.integers(0, 300, 64)
        mask = rng.integers(0, 2, 64).astype(np.int32)
        targets = np.where(mask[:, None] == 1, 0.4 * target, target)
        prepared = fc.prepare({"u": keys}, [col], adaptive_mask_tensors={"u": mask})
        state = step(state, prepared, jnp.asarray(targets, jnp.float32))

    # Assert
    along, norm, entries, promoted = np.asarray(state[col.name].share.sums)[0]
    assert entries > 600  # ~400 * 32 / HOLDOUT control entries
    assert 10 <= promoted <= 40  # the control keys among 300, once each mostly
    assert along / norm == pytest.approx(0.4, abs=0.05)
    summary = fc.summary(state)[col.name]
    assert summary["migration_evidence"] == (int(promoted),)
    squares = float(state[col.name].share.squares[0])
    slope = along / norm
    error = np.sqrt((squares / norm - slope**2) / (promoted - 1))
    assert 0 < error < 0.1  # the rows' spread about their slope, over ~20 ids
    lower = slope - _share.Z * error
    assert summary["migration_share"][0] == pytest.approx(
        lower * promoted / (promoted + _share.PRIOR_IDS), rel=1e-4
    )
    bucket = np.asarray(state[col.name].static.values[0])
    np.testing.assert_allclose(bucket, target, atol=0.05)


def test_a_column_with_another_migration_keeps_no_evidence():
    categorical = fc.categorical_column_with_adaptive_embedding(
        "u", 4, dtype="int64", migration="deeprec"
    )
    state = fc.init_state([fc.embedding_column(categorical, 2)], OPT, jax.random.key(0))
    assert state["u_embedding"].share is None
    assert "migration_share" not in fc.summary(state)["u_embedding"]


def test_an_eval_records_no_evidence_and_gives_no_row():
    # Control keys routed to the dynamic table: a training lookup gives them
    # rows and records their reads; an eval (training=False) does neither,
    # for keys without a row or with one.
    col = column()
    state = fc.init_state([col], OPT, jax.random.key(1))
    candidates = np.arange(2000)
    keys = candidates[held_out_keys(candidates)][:8]
    mask = {"u": np.ones(len(keys), np.int32)}
    prepared = fc.prepare({"u": keys}, [col], adaptive_mask_tensors=mask)
    _, evaluated, _ = fc.input_layer(
        prepared, [col], state, optimizer=OPT, training=False
    )
    assert not np.asarray(evaluated[col.name].share.sums).any()
    assert fc.summary(evaluated)[col.name]["live_rows"] == 0
    _, trained, _ = fc.input_layer(prepared, [col], state, optimizer=OPT)
    assert np.asarray(trained[col.name].share.sums)[0, 3] == len(keys)
    _, again, _ = fc.input_layer(
        prepared, [col], trained, optimizer=OPT, training=False
    )
    np.testing.assert_array_equal(
        again[col.name].share.sums, trained[col.name].share.sums
    )
