"""The adaptive policy: admission by count, eviction, statistics."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids, optim
from adaptive_jax.column import initializers
from adaptive_jax.ids import sparse
from adaptive_jax.table import _sketch

FTRL = dict(
    learning_rate=0.1, l1_regularization_strength=0.0, l2_regularization_strength=0.0
)


def plain_column(option, dim=2, key="k"):
    categorical = fc.categorical_column_with_embedding(
        key, dtype="int64", ev_option=option
    )
    return fc.embedding_column(
        categorical, dim, "sum", initializers.random_normal(stddev=1.0)
    )


def adaptive_column(option, dim=2, buckets=10, key="a", migration="deeprec"):
    # DeepRec's migration: a promoted row starts from its bucket, which these
    # tests check ("fitted" has its own, tests/test_share.py).
    categorical = fc.categorical_column_with_adaptive_embedding(
        key, buckets, dtype="int64", ev_option=option, migration=migration
    )
    return fc.embedding_column(
        categorical, dim, "sum", initializers.random_normal(stddev=1.0)
    )


def train_step(column, opt, state, rows, d_emb=None):
    features = {column.categorical_column.key: sparse.from_ragged(rows)}
    emb, state, residuals = fc.input_layer(features, [column], state, optimizer=opt)
    grad = jnp.ones_like(emb) if d_emb is None else d_emb
    return emb, fc.apply_gradients(state, residuals, grad, [column], opt)


lookup = jax.jit(aj.table.lookup)
live_rows = jax.jit(aj.table.live_rows)


def row_of(state, column, key):
    table = state[column.name].dynamic.table
    return int(lookup(table, ids.from_numpy([key]))[0])


# Admission.


def test_plain_dynamic_column_with_counter_filter_follows_deeprec():
    # One key a step: steps 1-3 read 0.0 (default_value_no_permission); at step 3
    # the count reaches 3, the key gets a row and step 3's gradient trains it;
    # step 4 reads the trained value.
    option = aj.EmbeddingVariableOption(
        capacity=8,
        filter_option=aj.CounterFilter(3),
        init_option=aj.InitializerOption(default_value_dim=16),
    )
    column, opt = plain_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(0))
    default = np.asarray(state["k_embedding"].default_values)[7 % 16]
    reads = []
    for _ in range(4):
        emb, state = train_step(column, opt, state, [[7]])
        reads.append(np.asarray(emb)[0])
    for read in reads[:3]:
        assert read.tolist() == [0.0, 0.0]
    spec = optim.Ftrl(**FTRL, l1_mode="row")
    want, _ = spec.update(
        jnp.asarray(default), spec.init_slots(jnp.asarray(default)), jnp.ones(2)
    )
    np.testing.assert_allclose(reads[3], np.asarray(want), rtol=1e-6)
    assert not np.allclose(reads[3], default)


def test_counts_include_the_steps_before_admission():
    # DeepRec: filter_freq=3, steps_to_live=2, batches [1,2,3], [1,3,5], [1,5,7].
    option = aj.EmbeddingVariableOption(
        capacity=8,
        filter_option=aj.CounterFilter(3),
        evict_option=aj.GlobalStepEvict(2),
    )
    column, opt = plain_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(0))
    for batch in ([1, 2, 3], [1, 3, 5], [1, 5, 7]):
        _, state = train_step(column, opt, state, [[k] for k in batch])
        state = fc.evict(state, [column], opt)
    assert fc.counts(state, column, [1, 3, 5, 7, 2]).tolist() == [3, 2, 2, 1, 1]
    assert row_of(state, column, 1) >= 0 and row_of(state, column, 3) < 0


def test_adaptive_column_without_mask_promotes_at_the_threshold_from_the_bucket():
    option = aj.EmbeddingVariableOption(capacity=8, filter_option=aj.CounterFilter(2))
    column, opt = adaptive_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(1))
    _, state = train_step(column, opt, state, [[11]])  # count 1: static bucket
    assert row_of(state, column, 11) < 0
    bucket = int(aj.hashing.to_hash_bucket_fast(np.array([11]), 10)[0])
    learnt = np.asarray(state["a_embedding"].static.values)[bucket]
    emb, state = train_step(column, opt, state, [[11]])  # count 2: promoted
    np.testing.assert_allclose(np.asarray(emb)[0], learnt, rtol=1e-6)
    assert row_of(state, column, 11) >= 0
    stats = fc.summary(state)["a_embedding"]
    assert stats["promotions"] == 1 and stats["refused_admissions"] == 1


def test_an_explicit_mask_wins_over_the_filter():
    option = aj.EmbeddingVariableOption(capacity=8, filter_option=aj.CounterFilter(5))
    column, opt = adaptive_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(1))
    features = {"a": sparse.from_ragged([[11]])}
    _, state, _ = fc.input_layer(
        features, [column], state, optimizer=opt, adaptive_mask_tensors={"a": [1]}
    )
    assert row_of(state, column, 11) >= 0


ADMISSION_COLUMN = adaptive_column(
    aj.EmbeddingVariableOption(
        capacity=64, filter_option=aj.CounterFilter(3, max_element_size=512)
    )
)


@jax.jit
def admission_step(state, features):
    _, state, _ = fc.input_layer(
        features, [ADMISSION_COLUMN], state, optimizer=optim.ftrl(**FTRL)
    )
    return state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.1, 1.5]))
def test_admission_equals_an_exact_count_while_the_stream_fits_its_sketch(seed, a):
    """DeepRec's rule, `count >= filter_freq`, against exact counts in a dict:
    on a stream of fewer distinct ids than the sketch was sized for, every id
    gets its row at the step its count reaches 3, and no other (precision and
    recall 1)."""
    rng = np.random.default_rng(seed)
    state = fc.init_state([ADMISSION_COLUMN], optim.ftrl(**FTRL), jax.random.key(0))
    truth, promoted = {}, set()
    for _ in range(12):
        keys = (rng.zipf(a, 8) % 200).tolist()
        for k in keys:
            truth[k] = truth.get(k, 0) + 1
        features = fc.prepare(
            {"a": sparse.from_ragged([[k] for k in keys])}, [ADMISSION_COLUMN]
        )
        state = admission_step(state, features)
        promoted |= {k for k in keys if truth[k] >= 3}
        table = state["a_embedding"].dynamic.table
        have = np.asarray(lookup(table, ids.from_numpy(sorted(truth)))) >= 0
        assert {
            k for k, h in zip(sorted(truth), have.tolist(), strict=True) if h
        } == promoted


# Eviction.


def state_with_rows(option, keys, column_maker=plain_column):
    column, opt = column_maker(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(2))
    features = {column.categorical_column.key: sparse.from_ragged([[k] for k in keys])}
    _, state, _ = fc.input_layer(features, [column], state, optimizer=opt)
    return column, opt, state


def test_l2_eviction_uses_deeprecs_half_squared_norm():
    option = aj.EmbeddingVariableOption(capacity=4, evict_option=aj.L2WeightEvict(0.15))
    column, opt, state = state_with_rows(option, [1, 2])
    dynamic = state["k_embedding"].dynamic
    values = dynamic.values.at[row_of(state, column, 1)].set(
        jnp.array([0.2, jnp.sqrt(0.16)])
    )
    values = values.at[row_of(state, column, 2)].set(jnp.array([0.3, 0.4]))  # 0.5*0.25
    state["k_embedding"] = state["k_embedding"].replace(
        dynamic=dynamic.replace(values=values)
    )
    state = fc.evict(state, [column], opt)
    # key 1: 0.5 * 0.2 = 0.1 < 0.15, evicted (without the 0.5 it would stay);
    # key 2: 0.5 * 0.25 = 0.125 < 0.15, evicted too.
    assert row_of(state, column, 1) < 0 and row_of(state, column, 2) < 0
    assert fc.summary(state)["k_embedding"]["evicted_l2"] == 2


def test_l2_eviction_keeps_rows_above_the_threshold():
    option = aj.EmbeddingVariableOption(capacity=4, evict_option=aj.L2WeightEvict(0.11))
    column, opt, state = state_with_rows(option, [1])
    dynamic = state["k_embedding"].dynamic
    values = dynamic.values.at[0].set(jnp.array([0.3, 0.4]))  # 0.5 * 0.25 = 0.125
    state["k_embedding"] = state["k_embedding"].replace(
        dynamic=dynamic.replace(values=values)
    )
    assert row_of(fc.evict(state, [column], opt), column, 1) == 0


def test_global_step_eviction_and_the_reset_of_evicted_rows():
    option = aj.EmbeddingVariableOption(capacity=4, evict_option=aj.GlobalStepEvict(2))
    column, opt = plain_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(3))
    _, state = train_step(column, opt, state, [[1], [2]])  # step 0
    for _ in range(2):
        _, state = train_step(column, opt, state, [[2]])  # steps 1, 2
    state = fc.evict(state, [column], opt)  # global step 3: key 1 is 3 steps old
    assert row_of(state, column, 1) < 0 and row_of(state, column, 2) >= 0
    dynamic = state["k_embedding"].dynamic
    assert np.asarray(dynamic.values)[0].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(
        np.asarray(dynamic.slots.accumulator)[0], np.float32(0.1)
    )
    assert int(dynamic.table.freq[0]) == 0
    stats = fc.summary(state)["k_embedding"]
    assert stats["evicted_steps"] == 1 and stats["mean_age_at_eviction"] == 3.0
    emb, state = train_step(column, opt, state, [[9]])  # row 0 again, inherits nothing
    assert row_of(state, column, 9) == 0
    default = np.asarray(state["k_embedding"].default_values)[9 % 4096]
    np.testing.assert_allclose(np.asarray(emb)[0], default, rtol=1e-6)


def test_an_evicted_id_falls_back_to_its_bucket():
    option = aj.EmbeddingVariableOption(capacity=4, evict_option=aj.GlobalStepEvict(1))
    column, opt = adaptive_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(4))
    mask = {"a": [1]}
    for _ in range(3):
        features = {"a": sparse.from_ragged([[5]])}
        _, state, res = fc.input_layer(
            features, [column], state, optimizer=opt, adaptive_mask_tensors=mask
        )
        state = fc.apply_gradients(state, res, jnp.zeros((1, 2)), [column], opt)
    state["a_embedding"] = state["a_embedding"].replace(
        dynamic=state["a_embedding"].dynamic.replace(
            table=aj.table.advance_step(state["a_embedding"].dynamic.table, 5)
        )
    )
    state = fc.evict(state, [column], opt)
    assert row_of(state, column, 5) < 0
    features = {"a": sparse.from_ragged([[5]])}
    emb, _, _ = fc.input_layer(
        features, [column], state, optimizer=opt, adaptive_mask_tensors={"a": [0]}
    )
    bucket = int(aj.hashing.to_hash_bucket_fast(np.array([5]), 10)[0])
    np.testing.assert_allclose(
        np.asarray(emb)[0], np.asarray(state["a_embedding"].static.values)[bucket]
    )


def test_pressure_eviction_frees_the_stalest_rows_down_to_the_target():
    policy = aj.options.PressureEvict(max_load=0.9, target_load=0.5)
    option = aj.EmbeddingVariableOption(capacity=64, evict_option=policy)
    column, opt = plain_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(5))
    for step in range(60):  # key `step` last seen at step `step`
        _, state = train_step(column, opt, state, [[step]])
    state = fc.evict(state, [column], opt)
    stats = fc.summary(state)["k_embedding"]
    assert 0.4 <= stats["load"] <= 0.5
    survivors = [k for k in range(60) if row_of(state, column, k) >= 0]
    assert survivors == list(range(60 - len(survivors), 60))  # the most recent
    assert stats["evicted_pressure"] == 60 - len(survivors)


def test_pressure_eviction_waits_for_pressure():
    policy = aj.options.PressureEvict(max_load=0.9, target_load=0.5)
    option = aj.EmbeddingVariableOption(capacity=64, evict_option=policy)
    column, opt, state = state_with_rows(option, range(50))
    assert fc.summary(fc.evict(state, [column], opt))["k_embedding"]["live_rows"] == 50


def test_maybe_evict_runs_on_its_schedule_inside_jit():
    option = aj.EmbeddingVariableOption(capacity=8, evict_option=aj.GlobalStepEvict(1))
    column, opt = plain_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(6))

    @jax.jit
    def step(state, features):
        emb, state, res = fc.input_layer(features, [column], state, optimizer=opt)
        state = fc.apply_gradients(state, res, jnp.ones_like(emb), [column], opt)
        return fc.maybe_evict(state, [column], opt, every=4)

    for keys in ([1], [2], [2], [2]):  # the fourth step's count is 4: evicts key 1
        features = fc.prepare({"k": sparse.from_ragged([keys])}, [column])
        state = step(state, features)
    assert row_of(state, column, 1) < 0 and row_of(state, column, 2) >= 0


# Statistics.


def test_statistics_count_what_each_store_served():
    option = aj.EmbeddingVariableOption(capacity=2, filter_option=aj.CounterFilter(2))
    column, opt = adaptive_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(7))
    for rows in ([[1], [2]], [[1], [2], [3]], [[3], [4]]):
        _, state = train_step(column, opt, state, rows)
    stats = fc.summary(state)["a_embedding"]
    # step 1: 1, 2 refused (count 1); step 2: 1, 2 promoted, 3 refused;
    # step 3: 3 reaches 2 but the table is full (overflow), 4 refused.
    assert stats["promotions"] == 2 and stats["overflows"] == 1
    assert stats["refused_admissions"] == 4
    assert stats["served_dynamic_total"] == 2 and stats["served_static_total"] == 5
    assert stats["served_static_last"] == 2 and stats["served_dynamic_last"] == 0
    assert stats["live_rows"] == 2 and stats["load"] == 1.0


# The sketch.


sketch_add = jax.jit(_sketch.add)
sketch_estimate = jax.jit(_sketch.estimate)


def plain_count_min(sketch, truth):
    """A plain count-min sketch's estimate of each key, in Python: each counter
    the sum of the counts of the keys hashed to it, the least of a key's."""
    keys = list(truth)
    positions = np.asarray(_sketch._positions(sketch, ids.from_numpy(keys)))
    counters = [{} for _ in positions]
    for row, at in zip(counters, positions, strict=True):
        for key, p in zip(keys, at.tolist(), strict=True):
            row[p] = row.get(p, 0) + truth[key]
    return {
        key: min(row[p] for row, p in zip(counters, positions[:, i], strict=True))
        for i, key in enumerate(keys)
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(-50, 50), min_size=1, max_size=16), min_size=1, max_size=4
    ),
    st.integers(1, 3),
    st.sampled_from([16, 256]),
)
def test_the_sketch_counts_between_the_truth_and_a_plain_count_min(
    batches, depth, padded_to
):
    """Conservative update: never below the true count, never above what a
    plain count-min sketch of the same counters would say; exact when wide.
    Padded to 16 entries, each counted entry is a chunk of its own (repeats
    meet across chunks); to 256, all are in one chunk."""
    narrow, wide = _sketch.Sketch.create(depth, 16), _sketch.Sketch.create(4, 4096)
    truth = {}
    for keys in batches:
        padded = ids.from_numpy(keys + [0] * (padded_to - len(keys)))
        mask = jnp.arange(padded_to) < len(keys)
        for k in keys:
            truth[k] = truth.get(k, 0) + 1
        narrow, after = sketch_add(narrow, padded, mask)
        wide, exact = sketch_add(wide, padded, mask)
        after = np.asarray(after)
        assert not after[len(keys) :].any()
        assert all(a >= truth[k] for k, a in zip(keys, after.tolist(), strict=False))
        assert np.asarray(exact)[: len(keys)].tolist() == [truth[k] for k in keys]
    plain = plain_count_min(narrow, truth)
    estimated = np.asarray(sketch_estimate(narrow, ids.from_numpy(list(truth))))
    for key, e in zip(truth, estimated.tolist(), strict=True):
        assert truth[key] <= e <= plain[key]
    # The ids it holds at each power of two, exact when no key collides.
    levels = [sum(c >= 2**k for c in truth.values()) for k in range(8)]
    assert np.asarray(wide.held).tolist() == levels


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 5)), min_size=1, max_size=8)
)
def test_a_weighted_entry_counts_as_its_repeats(entries):
    """The sketch counts an entry of weight w as w occurrences (its estimates
    and its counters), as the w entries would, and each key once among the
    distinct ids it holds."""
    keys = [k for k, _ in entries] + [0] * (8 - len(entries))
    weights = [w for _, w in entries] + [0] * (8 - len(entries))
    mask = jnp.arange(8) < len(entries)
    repeated = [k for k, w in entries for _ in range(w)]
    repeated += [0] * (48 - len(repeated))
    sketch = _sketch.Sketch.create(2, 64)
    merged, after = sketch_add(
        sketch, ids.from_numpy(keys), mask, weights=jnp.asarray(weights, jnp.int32)
    )
    plain, _ = sketch_add(
        sketch, ids.from_numpy(repeated), jnp.arange(48) < sum(weights)
    )
    np.testing.assert_array_equal(np.asarray(merged.counts), np.asarray(plain.counts))
    np.testing.assert_array_equal(np.asarray(merged.held), np.asarray(plain.held))
    assert float(merged.held[0]) <= len({k for k, _ in entries})
    estimates = np.asarray(sketch_estimate(plain, ids.from_numpy(keys)))
    np.testing.assert_array_equal(
        np.asarray(after)[: len(entries)], estimates[: len(entries)]
    )


def test_the_sketch_halves_when_full_forgets_single_ids_and_reads_before():
    sketch = _sketch.Sketch.create(1, 64)
    batch = ids.from_numpy([5, 5, 5, 6, 7, 8])
    sketch, counts = _sketch.add(sketch, batch, jnp.ones(6, bool), halve_at=4.0)
    assert np.asarray(counts).tolist() == [3, 3, 3, 1, 1, 1]  # read before halving
    left = np.asarray(_sketch.estimate(sketch, ids.from_numpy([5, 6, 7, 8])))
    assert left.tolist() == [1, 0, 0, 0]  # 3 // 2; the ids seen once forgotten
    # 4 ids held, 1 at 2 or more; halved: 1 held (5, at 1), none at 2.
    assert np.asarray(sketch.held)[:3].tolist() == [1.0, 0.0, 0.0]


def test_sketch_counters_saturate_instead_of_wrapping():
    sketch = _sketch.Sketch.create(1, 4)
    sketch = sketch.replace(counts=jnp.full((1, 4), 255, jnp.uint8))
    sketch, after = sketch_add(sketch, ids.from_numpy([5, 5]), jnp.ones(2, bool))
    assert np.asarray(after).tolist() == [255, 255]
    assert np.asarray(sketch.counts).tolist() == [[255] * 4]


@pytest.mark.parametrize(
    ("filter_freq", "dtype"),
    [(3, np.uint8), (255, np.uint8), (256, np.uint16), (70_000, np.uint32)],
    ids=["small", "uint8_max", "uint16", "uint32"],
)
def test_the_counters_are_just_wide_enough_for_the_threshold(filter_freq, dtype):
    option = aj.EmbeddingVariableOption(
        capacity=8, filter_option=aj.CounterFilter(filter_freq, max_element_size=64)
    )
    column, opt = adaptive_column(option), optim.ftrl(**FTRL)
    state = fc.init_state([column], opt, jax.random.key(0))
    assert state["a_embedding"].sketch.counts.dtype == dtype


@pytest.mark.parametrize("depth", [2, 4])
def test_a_sketch_sized_for_n_ids_takes_a_new_id_for_a_seen_one_at_the_rate(depth):
    """Sized for 5,000 ids at p = 2%, after 5,000 distinct ids a new id finds
    all its counters taken at about that rate (the bound `CounterFilter`
    documents), and at a tenth of the ids far less often."""
    n, p = 5_000, 0.02
    sketch = _sketch.Sketch.create(*_sketch.count_min_shape(n, depth, p))
    seen = np.random.default_rng(depth).integers(-(2**62), 2**62, n)
    fresh = ids.from_numpy(np.arange(20_000) + 2**62)  # none of them seen
    sketch, _ = sketch_add(
        sketch, ids.from_numpy(seen[: n // 10]), jnp.ones(n // 10, bool)
    )
    assert np.mean(np.asarray(sketch_estimate(sketch, fresh)) > 0) < p / 10
    sketch, _ = sketch_add(sketch, ids.from_numpy(seen), jnp.ones(n, bool))
    rate = np.mean(np.asarray(sketch_estimate(sketch, fresh)) > 0)
    assert 0.5 * p < rate < 1.5 * p


def test_bloom_filter_is_sized_from_elements_and_false_positive_rate():
    hashes, width = _sketch.bloom_shape(10_000, 0.01)
    total = math.ceil(-10_000 * math.log(0.01) / math.log(2) ** 2)
    assert hashes == 7 and hashes * width >= total
    shape = aj.CBFFilter(3, 10_000, 0.01).sketch_shape(capacity=123)
    assert shape == (hashes, width)


def test_the_sketch_is_sized_from_the_expected_ids_not_the_capacity():
    small, large = (
        aj.CounterFilter(3, max_element_size=10_000).sketch_shape(capacity=c)
        for c in (16, 2**20)
    )
    assert small == large == _sketch.count_min_shape(10_000, 4, 0.005)
    assert 13.5e6 < aj.CounterFilter(3).sketch_bytes() < 13.7e6  # as documented
    # A partitioned table's sketches share the expected ids.
    depth, width = aj.CounterFilter(3, max_element_size=10_000).sketch_shape(0, 4)
    assert (depth, width) == _sketch.count_min_shape(2_500, 4, 0.005)


# A long random stream.


STREAM_OPTION = aj.EmbeddingVariableOption(
    capacity=16,
    filter_option=aj.CounterFilter(2),
    evict_option=(aj.GlobalStepEvict(3), aj.options.PressureEvict(0.9, 0.6)),
)
STREAM_COLUMN = adaptive_column(STREAM_OPTION, buckets=7)
STREAM_OPT = optim.ftrl(**FTRL)


@jax.jit
def stream_step(state, features):
    column, opt = STREAM_COLUMN, STREAM_OPT
    emb, state, res = fc.input_layer(features, [column], state, optimizer=opt)
    state = fc.apply_gradients(state, res, jnp.ones_like(emb), [column], opt)
    return fc.maybe_evict(state, [column], opt, every=3), res


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_a_long_stream_keeps_the_table_sound_and_ids_on_their_own_rows(seed):
    rng = np.random.default_rng(seed)
    column = STREAM_COLUMN
    state = fc.init_state([column], STREAM_OPT, jax.random.key(seed % 1000))
    for _ in range(30):
        keys = (rng.zipf(1.3, 12) % 40).tolist()
        batch = sparse.from_ragged([[k] for k in keys])
        features = fc.prepare({"a": batch}, [column], size=16)
        state, res = stream_step(state, features)
        table = state["a_embedding"].dynamic.table
        stored = ids.Ids(table.row_keys[:, 0], table.row_keys[:, 1])
        # Each id that read a dynamic row read its own.
        rows = np.asarray(res["a_embedding"].dynamic_rows)[: len(keys)]
        row_keys = ids.to_numpy(stored)
        for key, row in zip(keys, rows.tolist(), strict=True):
            if row < table.capacity:
                assert row_keys[row] == key
        # The table's invariants.
        live = np.asarray(live_rows(table))
        free = np.asarray(table.free_list)[: int(table.num_free)]
        assert len(set(free.tolist())) == len(free) and not live[free].any()
        assert live.sum() + len(free) == table.capacity
        found = np.asarray(lookup(table, stored))
        assert (found[live] == np.flatnonzero(live)).all()
    stats = fc.summary(state)["a_embedding"]
    assert stats["evicted_steps"] + stats["evicted_pressure"] > 0
