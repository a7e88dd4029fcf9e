"""Stacked columns: many features in one table, against the same features apart."""

from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax import serving
from adaptive_jax import table as table_lib
from adaptive_jax.column import stacking
from adaptive_jax.ids import hashing, sparse
from adaptive_jax.persist import export

DIM, BATCH, STEPS = 2, 8, 4
# Members named in sorted order: separate columns concatenate as the fields do.
KEYS = ("a", "b", "c")
SIZES = {"a": 5, "b": 3, "c": 7}
OFFSETS = {"a": 0, "b": 5, "c": 8}
CAPACITIES = {"a": 16, "b": 16, "c": 12}
NUM_IDS = 10  # raw ids 0..9 in every member: equal ids in different members
LENGTHS = (2, 0, 1, 3, 1, 0, 2, 1)  # ids per example of a ragged member
OPT = aj.optim.ftrl(0.1)
TABLE_INIT = aj.initializers.random_normal(stddev=1.0)
ROW_INIT = aj.InitializerOption(initializer=aj.initializers.ones(), default_value_dim=8)


# Helpers.


class Case(NamedTuple):
    kind: str  # "adaptive", "static" or "dynamic"
    dtype: str
    combiner: str
    ragged_b: bool  # member "b" has ragged rows, an empty one among them
    weights: bool  # ... and per-id weights
    keys: tuple[str, ...] = KEYS  # the members (fewer: fewer compiles)
    # An adaptive member's: "deeprec" starts a new row from its bucket, what
    # serving reads for an id without a row; "fitted" from a measured share.
    migration: str = "deeprec"


CASES = {
    "adaptive-int64-dense-mean": Case(
        "adaptive", "int64", "mean", False, False, ("a", "b")
    ),
    "adaptive-string-ragged-weighted-sum": Case(
        "adaptive", "string", "sum", True, True, ("a", "b")
    ),
    "adaptive-string-dense-mean-fitted": Case(
        "adaptive", "string", "mean", False, False, ("a", "b"), "fitted"
    ),
    "static-int64-ragged-weighted-mean": Case("static", "int64", "mean", True, True),
    "dynamic-int64-ragged-sqrtn": Case(
        "dynamic", "int64", "sqrtn", True, False, ("a", "b")
    ),
}


def member_column(kind: str, key: str, dtype: str = "int64", **changes: Any):
    """A member of the given kind, with the sizes of `SIZES` and `CAPACITIES`."""
    option = aj.EmbeddingVariableOption(
        capacity=changes.pop("capacity", CAPACITIES.get(key, 16)), init_option=ROW_INIT
    )
    option = dataclasses.replace(option, **changes.pop("ev_changes", {}))
    size = changes.pop("hash_bucket_size", SIZES.get(key, 4))
    if kind == "adaptive":
        return fc.categorical_column_with_adaptive_embedding(
            key, size, dtype=dtype, ev_option=option, **changes
        )
    if kind == "static":
        return fc.categorical_column_with_hash_bucket(key, size, dtype=dtype)
    return fc.categorical_column_with_embedding(
        key, dtype=dtype, ev_option=option, **changes
    )


def raw_ids(rng: np.random.Generator, dtype: str, n: int, offset: int = 0):
    values = rng.integers(0, NUM_IDS, n) + offset
    if dtype == "string":
        return np.array([f"id{v}" for v in values])
    return values.astype(np.int64)


def make_batch(rng: np.random.Generator, case: Case, unseen: bool = False):
    """Features and masks of one batch. With `unseen`, the first half of the
    examples of the members with one id per example have ids that training
    never saw."""
    features, masks = {}, {}
    for key in case.keys:
        if case.ragged_b and key == "b":
            flat = raw_ids(rng, case.dtype, sum(LENGTHS)).tolist()
            ends = np.cumsum(LENGTHS)
            rows = [flat[end - n : end] for n, end in zip(LENGTHS, ends, strict=True)]
            weights = None
            if case.weights:
                weights = [rng.uniform(0.5, 2.0, n).tolist() for n in LENGTHS]
            features[key] = sparse.from_ragged(rows, weights=weights)
            num_ids = len(flat)
        else:
            values = raw_ids(rng, case.dtype, BATCH)
            if unseen:
                values[: BATCH // 2] = raw_ids(rng, case.dtype, BATCH // 2, 100)
            features[key] = values.reshape(BATCH, 1)
            num_ids = BATCH
        masks[key] = rng.integers(0, 2, num_ids).astype(np.int32)
    return features, masks if case.kind == "adaptive" else None


def with_static(state: dict, name: str, values: jax.Array) -> dict:
    column = state[name]
    static = column.static.replace(values=values)
    return {**state, name: column.replace(static=static)}


class Trained(NamedTuple):
    case: Case
    stacked: fc.EmbeddingColumn
    separate: list[fc.EmbeddingColumn]
    stacked_state: dict
    separate_state: dict
    history: list[tuple[np.ndarray, np.ndarray]]  # (separate, stacked) per step


@functools.cache
def trained(name: str) -> Trained:
    """`STEPS` steps of the members stacked and of the members apart, on the same
    batches and gradients, both starting from the same static tables."""
    case = CASES[name]
    changes = {"migration": case.migration} if case.kind == "adaptive" else {}
    members = [
        member_column(case.kind, key, case.dtype, **changes) for key in case.keys
    ]
    separate = [fc.embedding_column(m, DIM, case.combiner, TABLE_INIT) for m in members]
    stacked = fc.embedding_column(
        fc.stacked_column(members, "s"), DIM, case.combiner, TABLE_INIT
    )
    separate_state = fc.init_state(separate, OPT, jax.random.key(0))
    stacked_state = fc.init_state([stacked], OPT, jax.random.key(1))
    if case.kind != "dynamic":
        segments = [separate_state[f"{k}_embedding"].static.values for k in case.keys]
        stacked_state = with_static(
            stacked_state, "s_embedding", jnp.concatenate(segments)
        )
    rng = np.random.default_rng(7)
    history = []
    for _ in range(STEPS):
        features, masks = make_batch(rng, case)
        apart, separate_state, apart_residuals = fc.input_layer(
            features,
            separate,
            separate_state,
            optimizer=OPT,
            adaptive_mask_tensors=masks,
        )
        together, stacked_state, residuals = fc.input_layer(
            features,
            [stacked],
            stacked_state,
            optimizer=OPT,
            adaptive_mask_tensors=masks,
        )
        history.append((np.asarray(apart), np.asarray(together)))
        d_emb = jnp.asarray(rng.normal(size=(BATCH, len(case.keys) * DIM)), jnp.float32)
        separate_state = fc.apply_gradients(
            separate_state, apart_residuals, d_emb, separate, OPT
        )
        stacked_state = fc.apply_gradients(
            stacked_state, residuals, d_emb, [stacked], OPT
        )
    return Trained(case, stacked, separate, stacked_state, separate_state, history)


# The column itself.


def test_a_stacked_column_sums_its_members_sizes_and_names_its_features():
    # Arrange
    members = [member_column("adaptive", key) for key in KEYS]

    # Act
    stacked = fc.stacked_column(members, "s")
    column = fc.embedding_column(stacked, 3)

    # Assert
    assert stacked.hash_bucket_size == 5 + 3 + 7
    assert stacked.ev_option.capacity == 16 + 16 + 12
    assert stacked.feature_keys == KEYS and stacked.fields == 3
    assert stacked.members == tuple(stacking.Member(k, SIZES[k]) for k in KEYS)
    assert column.width == 9 and fc.embedding_column(members[0], 3).width == 3
    np.testing.assert_array_equal(stacking.offsets(stacked.members), [0, 5, 8])


# Training: a stacked column equals its members apart.


@pytest.mark.parametrize("name", list(CASES))
def test_a_stacked_column_trains_as_its_members_would_apart(name):
    # Arrange, Act
    run = trained(name)

    # Assert: the embeddings of every step, fields side by side in member order.
    for step, (apart, together) in enumerate(run.history):
        assert together.shape == (BATCH, len(run.case.keys) * DIM)
        np.testing.assert_allclose(
            together, apart, rtol=1e-6, atol=1e-6, err_msg=f"step {step}"
        )
    assert not np.allclose(run.history[0][1], run.history[-1][1])  # it trained
    stacked = run.stacked_state["s_embedding"]
    if run.case.kind != "dynamic":  # each segment is its member's own table
        segments = [
            run.separate_state[f"{k}_embedding"].static.values for k in run.case.keys
        ]
        np.testing.assert_allclose(
            stacked.static.values, np.concatenate(segments), rtol=1e-6, atol=1e-6
        )
    if run.case.kind != "static":  # equal raw ids of two members: two rows
        rows_apart = sum(
            fc.summary(run.separate_state)[f"{k}_embedding"]["live_rows"]
            for k in run.case.keys
        )
        assert rows_apart > NUM_IDS
        assert fc.summary(run.stacked_state)["s_embedding"]["live_rows"] == rows_apart


def test_an_empty_row_of_a_member_gives_zeros_in_its_field_only():
    # Arrange: member "b" has no ids in examples 1 and 5.
    run = trained("static-int64-ragged-weighted-mean")

    # Act
    together = run.history[0][1]

    # Assert
    empty = [i for i, n in enumerate(LENGTHS) if n == 0]
    np.testing.assert_array_equal(together[empty, DIM : 2 * DIM], 0.0)
    assert np.all(together[empty, :DIM] != 0)
    assert np.all(together[empty, 2 * DIM :] != 0)


# Buckets and keys.


def members_of(sizes: dict[str, int | None]) -> list[stacking.Member]:
    return [stacking.Member(k, n) for k, n in sizes.items()]


def entries(column_ids) -> tuple[np.ndarray, ...]:
    """Rows, positions, keys, buckets and weights of the valid entries."""
    batch = column_ids.ids
    valid = np.asarray(batch.valid)
    indices = np.asarray(batch.indices)[valid]
    keys = ids_lib.to_numpy(batch.values)[valid]
    weights = None if batch.weights is None else np.asarray(batch.weights)[valid]
    return (
        indices[:, 0],
        indices[:, 1],
        keys,
        np.asarray(column_ids.buckets)[valid],
        weights,
    )


def salt_of(key: str) -> np.int64:
    """The formula: 63 bits of TensorFlow's Fingerprint64 of the member's key."""
    return np.int64(hashing.fingerprint64(np.array([key]))[0] >> np.uint64(1))


@pytest.mark.parametrize("dtype", ["int64", "string"])
def test_buckets_land_in_the_members_own_segment_as_tf_buckets_it_alone(dtype):
    # Arrange: wide ids, so that the buckets spread over each segment.
    rng = np.random.default_rng(0)
    sizes = {"site": 11, "device": 2, "hour": 5}
    raw = {k: rng.integers(-(10**9), 10**9, 40) for k in sizes}
    if dtype == "string":
        raw = {k: np.array([f"v{v}" for v in ids]) for k, ids in raw.items()}
    features = {k: ids.reshape(40, 1) for k, ids in raw.items()}

    # Act
    column_ids, examples = stacking.column_ids(
        features, key="s", dtype=dtype, members=members_of(sizes)
    )

    # Assert
    rows, _, keys, buckets, _ = entries(column_ids)
    assert examples == 40 and column_ids.ids.batch_size == 40 * 3
    offset = 0
    for field, (key, size) in enumerate(sizes.items()):
        mine = rows % 3 == field
        np.testing.assert_array_equal(rows[mine] // 3, np.arange(40))
        assert np.all((offset <= buckets[mine]) & (buckets[mine] < offset + size))
        np.testing.assert_array_equal(
            buckets[mine], offset + hashing.to_hash_bucket_fast(raw[key], size)
        )
        deeprec_keys = (
            hashing.string_to_key(raw[key]) if dtype == "string" else raw[key]
        )
        np.testing.assert_array_equal(keys[mine], deeprec_keys ^ salt_of(key))
        if dtype == "string":
            assert np.all(keys[mine] >= 0)
        offset += size


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(["int64", "string"]),
    widths=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    examples=st.integers(1, 6),
    sized=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_dense_members_give_what_each_member_apart_gives(
    dtype, widths, examples, sized, seed
):
    # Arrange: dense members (hashed together in one pass), and the same ids
    # as SparseIds (done member by member); missing ids (-1, "") among them.
    rng = np.random.default_rng(seed)
    dense = {}
    for i, width in enumerate(widths):
        ids = rng.integers(-3, 2**40, (examples, width))
        ids[rng.random(ids.shape) < 0.3] = -1
        dense[f"m{i}"] = (
            ids if dtype == "int64" else np.where(ids == -1, "", ids.astype(str))
        )
    sizes = {k: int(rng.integers(1, 9)) if sized else None for k in dense}
    apart = {k: sparse.from_dense(v) for k, v in dense.items()}

    # Act
    together = stacking.column_ids(
        dense, key="s", dtype=dtype, members=members_of(sizes), size=64
    )
    each = stacking.column_ids(
        apart, key="s", dtype=dtype, members=members_of(sizes), size=64
    )

    # Assert: the same batch, leaf for leaf.
    assert together[1] == each[1] == examples
    assert together[0].ids.batch_size == each[0].ids.batch_size
    assert together[0].ids.strings == each[0].ids.strings
    for a, b in zip(
        jax.tree.leaves(together[0]), jax.tree.leaves(each[0]), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_ragged_member_keeps_its_rows_positions_and_weights_example_major():
    # Arrange: "b" has rows [], [4, 5, 6], [7]; "a" one id per example.
    features = {
        "a": np.array([[1], [2], [3]]),
        "b": sparse.from_ragged([[], [4, 5, 6], [7]], weights=[[], [1, 2, 3], [4]]),
    }

    # Act
    column_ids, examples = stacking.column_ids(
        features, key="s", dtype="int64", members=members_of({"a": 2, "b": 3})
    )

    # Assert: row i * 2 + f, in example order, then member, then position.
    rows, positions, keys, _, weights = entries(column_ids)
    assert examples == 3
    np.testing.assert_array_equal(rows, [0, 2, 3, 3, 3, 4, 5])
    np.testing.assert_array_equal(positions, [0, 0, 0, 1, 2, 0, 0])
    raw = np.array([1, 2, 4, 5, 6, 3, 7])
    salts = np.array([salt_of("a" if r % 2 == 0 else "b") for r in rows])
    np.testing.assert_array_equal(keys, raw ^ salts)
    np.testing.assert_array_equal(weights, [1, 1, 1, 2, 3, 1, 4])  # "a" weighs 1
    assert column_ids.to_dynamic is None


def test_masks_follow_their_ids_into_the_stacked_order():
    # Arrange
    features = {"a": np.array([[1], [2]]), "b": sparse.from_ragged([[3, 4], [5]])}
    masks = {"a": np.array([1, 0]), "b": np.array([0, 1, 1])}

    # Act
    column_ids, _ = stacking.column_ids(
        features,
        key="s",
        dtype="int64",
        members=members_of({"a": 2, "b": 2}),
        masks=masks,
    )

    # Assert: entries a:1, b:3, b:4, a:2, b:5.
    valid = np.asarray(column_ids.ids.valid)
    np.testing.assert_array_equal(
        np.asarray(column_ids.to_dynamic)[valid], [1, 0, 1, 0, 1]
    )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(-(2**63), 2**63 - 1),
    st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=5, unique=True),
)
def test_equal_ids_of_different_members_get_different_keys(raw, member_keys):
    keys = [int(stacking.salted_keys(np.array([raw]), k)[0]) for k in member_keys]
    assert len(set(keys)) == len(member_keys)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40, unique=True),
    st.text(min_size=1, max_size=8),
)
def test_salted_keys_of_one_member_are_distinct_for_distinct_ids(raw, member_key):
    keys = stacking.salted_keys(np.array(raw, np.int64), member_key)
    assert keys.dtype == np.int64
    assert len(set(keys.tolist())) == len(raw)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.text(max_size=10), min_size=1, max_size=20),
    st.text(min_size=1, max_size=8),
)
def test_salted_string_keys_stay_non_negative(strings, member_key):
    keys = stacking.salted_keys(hashing.string_to_key(np.array(strings)), member_key)
    assert np.all(keys >= 0)


def test_an_admission_filter_counts_each_members_ids_apart_and_promotes_them():
    # Arrange: id 1 in both members; seen twice in all at step 1, but once per
    # member, so it is promoted in each member at step 2 only.
    option = aj.EmbeddingVariableOption(capacity=64, filter_option=aj.CounterFilter(2))
    members = [
        fc.categorical_column_with_adaptive_embedding(
            k, 4, dtype="int64", ev_option=option
        )
        for k in ("a", "b")
    ]
    column = fc.embedding_column(fc.stacked_column(members, "s"), DIM)
    state = fc.init_state([column], OPT, jax.random.key(3))
    batches = [
        {"a": np.array([[1], [2], [3], [4]]), "b": np.array([[1], [5], [6], [7]])},
        {"a": np.array([[1], [8], [9], [10]]), "b": np.array([[1], [11], [12], [13]])},
    ]
    promotions = []

    # Act
    for features in batches:
        emb, state, residuals = fc.input_layer(features, [column], state, optimizer=OPT)
        state = fc.apply_gradients(
            state, residuals, jnp.ones((4, 2 * DIM), jnp.float32), [column], OPT
        )
        promotions.append(fc.summary(state)["s_embedding"]["promotions"])

    # Assert
    assert emb.shape == (4, 2 * DIM)
    assert promotions == [0, 2]
    assert fc.summary(state)["s_embedding"]["live_rows"] == 2
    salted = np.array([int(stacking.salted_keys(np.array([1]), k)[0]) for k in "ab"])
    assert np.all(fc.counts(state, column, salted) >= 1)
    assert fc.counts(state, column, np.array([1]))[0] == 0  # the raw id: no key


# Serving.


@pytest.mark.parametrize(
    "name", [name for name, case in CASES.items() if case.migration != "fitted"]
)
def test_serving_a_stacked_column_gives_the_training_lookup(name, tmp_path):
    # Arrange: a trained stacked column; a batch with seen and unseen ids.
    run = trained(name)
    features, masks = make_batch(np.random.default_rng(11), run.case, unseen=True)
    expected, _, _ = fc.input_layer(
        features,
        [run.stacked],
        run.stacked_state,
        optimizer=OPT,
        adaptive_mask_tensors=masks,
    )

    # Act
    exported = export.export(run.stacked_state, [run.stacked])
    served = serving.lookup(serving.build(exported), features, masks=masks)
    serving.save(exported, tmp_path / "export")
    loaded = serving.load(tmp_path / "export")
    reloaded = serving.lookup(serving.build(loaded), features, masks=masks)

    # Assert
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(reloaded, served)
    sizes = [None if run.case.kind == "dynamic" else SIZES[k] for k in run.case.keys]
    want = tuple(zip(run.case.keys, sizes, strict=True))
    for column in (exported.columns["s_embedding"], loaded.columns["s_embedding"]):
        assert column.members == want
        assert isinstance(column.members, tuple)
        assert all(isinstance(m, tuple) for m in column.members)


def test_serving_reads_unseen_ids_from_their_members_static_bucket():
    # Arrange
    run = trained("adaptive-int64-dense-mean")
    features, _ = make_batch(np.random.default_rng(11), run.case, unseen=True)
    exported = export.export(run.stacked_state, [run.stacked])
    static = exported.columns["s_embedding"].static

    # Act: no masks; an id without a row reads its bucket.
    served = np.asarray(serving.lookup(serving.build(exported), features))

    # Assert: the numpy bucket of each unseen id, in its member's segment.
    for field, key in enumerate(run.case.keys):
        ids = features[key][:, 0]
        unseen = ids >= 100
        assert unseen.sum() == BATCH // 2
        buckets = OFFSETS[key] + hashing.to_hash_bucket_fast(ids[unseen], SIZES[key])
        np.testing.assert_allclose(
            served[unseen, field * DIM : (field + 1) * DIM], static[buckets], rtol=1e-6
        )


# Bad input.


def stacked_pair(kind: str = "adaptive", **changes: Any) -> list:
    return [member_column(kind, "a"), member_column(kind, "b", **changes)]


BAD_STACKS = {
    "adaptive-and-static": (
        lambda: [member_column("adaptive", "a"), member_column("static", "b")],
        "stacked column 's': member 'b' has adaptive False, member 'a' True",
    ),
    "static-and-dynamic": (
        lambda: [member_column("static", "a"), member_column("dynamic", "b")],
        "member 'b' is not of the kind of member 'a'",
    ),
    "dtypes": (
        lambda: stacked_pair(dtype="string"),
        "member 'b' has dtype 'string', member 'a' 'int64'",
    ),
    "migrations": (
        lambda: stacked_pair(migration="copy"),
        "member 'b' has migration 'copy', member 'a' 'fitted'",
    ),
    "partitions": (
        lambda: stacked_pair(partition_num=2),
        "member 'b' has partition_num 2, member 'a' None",
    ),
    "ev-option-filter": (
        lambda: stacked_pair(ev_changes={"filter_option": aj.CounterFilter(2)}),
        "member 'b' has other ev_option settings than member 'a'",
    ),
    "ev-option-l1-mode": (
        lambda: stacked_pair("dynamic", ev_changes={"l1_mode": "coordinate"}),
        "member 'b' has other ev_option settings than member 'a'",
    ),
    "repeated-key": (
        lambda: [member_column("adaptive", "a"), member_column("adaptive", "a")],
        r"stacked column 's': a feature is repeated in \['a', 'a'\]",
    ),
    "no-members": (lambda: [], "stacked column 's': give at least one member"),
    "stacked-member": (
        lambda: [
            fc.stacked_column(stacked_pair(), "ab"),
            member_column("adaptive", "c"),
        ],
        "stacked column 's': members must be categorical columns of one feature.*'ab'",
    ),
    "embedding-member": (
        lambda: [fc.embedding_column(member_column("adaptive", "a"), 2)],
        "stacked column 's': members must be categorical columns of one feature",
    ),
    "capacity-over-max": (
        lambda: [
            member_column("adaptive", k, capacity=table_lib.MAX_CAPACITY // 2 + 1)
            for k in "ab"
        ],
        f"stacked column 's': the members' capacities add up to "
        f"{table_lib.MAX_CAPACITY + 2}, over the dynamic table's "
        f"{table_lib.MAX_CAPACITY}",
    ),
    "buckets-over-max": (
        lambda: [member_column("static", k, hash_bucket_size=2**30 + 1) for k in "ab"],
        r"column 's': hash_bucket_size must be in \[1, 2\*\*31 - 1\]",
    ),
}


@pytest.mark.parametrize("name", list(BAD_STACKS))
def test_bad_members_raise_naming_the_column_and_member(name):
    make, message = BAD_STACKS[name]
    members = make()
    with pytest.raises(ValueError, match=message):
        fc.stacked_column(members, "s")


def test_members_that_differ_only_in_capacity_stack():
    stacked = fc.stacked_column(stacked_pair(capacity=5), "s")
    assert stacked.ev_option.capacity == 16 + 5


ADAPTIVE_PAIR = fc.embedding_column(fc.stacked_column(stacked_pair(), "s"), DIM)
OTHER = fc.embedding_column(member_column("static", "z"), DIM)
TWO = {"a": np.array([[1], [2]]), "b": np.array([[3], [4]])}
TWO_MASKS = {"a": np.array([1, 0]), "b": np.array([0, 1])}
BAD_PREPARES = {
    "missing-member-feature": (
        {"a": TWO["a"], "z": TWO["a"]},
        TWO_MASKS,
        [ADAPTIVE_PAIR],
        r"column 's': its member feature 'b' is missing from the features "
        r"\(they have \['a', 'z'\]\)",
    ),
    "members-of-different-batch-sizes": (
        {"a": TWO["a"], "b": np.array([[3], [4], [5]])},
        {"a": np.array([1, 0]), "b": np.array([0, 1, 1])},
        [ADAPTIVE_PAIR],
        "column 's': member 'b' has 3 examples, member 'a' 2",
    ),
    "masks-for-some-members-only": (
        TWO,
        {"a": np.array([1, 0])},
        [ADAPTIVE_PAIR],
        r"column 's': adaptive_mask_tensors has masks for members \['a'\] but not "
        r"for \['b'\]",
    ),
    "no-masks-no-filter": (
        TWO,
        None,
        [ADAPTIVE_PAIR],
        r"column 's' is adaptive: give adaptive_mask_tensors for its members "
        r"\['a', 'b'\]",
    ),
    "a-members-mask-of-the-wrong-length": (
        TWO,
        {"a": np.array([1, 0]), "b": np.array([1])},
        [ADAPTIVE_PAIR],
        r"column 'b': adaptive_mask_tensors\['b'\] has shape \(1,\)",
    ),
    "a-members-ids-of-the-wrong-kind": (
        {"a": TWO["a"], "b": np.array([["x"], ["y"]])},
        TWO_MASKS,
        [ADAPTIVE_PAIR],
        "column 'b' has dtype int64, but its ids are strings",
    ),
    "a-mask-for-the-stacked-key": (
        TWO,
        {**TWO_MASKS, "s": np.array([1, 1, 1, 1])},
        [ADAPTIVE_PAIR],
        r"adaptive_mask_tensors\['s'\]: no adaptive column has key 's'",
    ),
    "another-column-of-another-batch-size": (
        {**TWO, "z": np.array([[1], [2], [3]])},
        TWO_MASKS,
        [ADAPTIVE_PAIR, OTHER],
        r"features have different batch sizes: \[2, 3\]",
    ),
}


@pytest.mark.parametrize("name", list(BAD_PREPARES))
def test_bad_stacked_features_raise_naming_the_column_or_member(name):
    features, masks, columns, message = BAD_PREPARES[name]
    with pytest.raises(ValueError, match=message):
        fc.prepare(features, columns, adaptive_mask_tensors=masks)


def test_serving_a_stacked_column_without_a_member_feature_raises_naming_it():
    # Arrange: an untrained export; building compiles nothing without rows.
    state = fc.init_state([ADAPTIVE_PAIR], OPT, jax.random.key(0))
    built = serving.build(export.export(state, [ADAPTIVE_PAIR]))

    # Act, Assert
    with pytest.raises(ValueError, match="column 's': its member feature 'b'"):
        serving.prepare(built, {"a": TWO["a"]})
    with pytest.raises(ValueError, match=r"masks for members \['b'\] but not"):
        serving.prepare(built, TWO, masks={"b": TWO_MASKS["b"]})


# Static segment sizes.


def quota_bounds(counts: dict[str, int], total: int, minimum: int) -> dict:
    """Largest remainder in exact arithmetic: each size is its exact share of the
    spare buckets, rounded down or up."""
    spare, weight = total - minimum * len(counts), sum(counts.values())
    if spare <= 0 or weight == 0:
        return {k: (minimum, minimum) for k in counts}
    bounds = {}
    for key, count in counts.items():
        share = Fraction(spare * count, weight)
        low = minimum + share.numerator // share.denominator
        bounds[key] = (low, low + (share.denominator != 1))
    return bounds


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=4), st.integers(0, 10**6), min_size=1, max_size=8
    ),
    st.integers(1, 10**4),
    st.integers(1, 5),
)
def test_proportional_sizes_share_the_total_by_count(counts, total, minimum):
    # Act
    sizes = stacking.proportional_sizes(counts, total, minimum=minimum)

    # Assert
    assert list(sizes) == list(counts)
    assert all(isinstance(n, int) and n >= minimum for n in sizes.values())
    if any(counts.values()):
        assert sum(sizes.values()) == max(total, minimum * len(counts))
    else:
        assert all(n == minimum for n in sizes.values())
    for key, (low, high) in quota_bounds(counts, total, minimum).items():
        assert low <= sizes[key] <= high, key
    for key in counts:
        for other in counts:
            if counts[key] > counts[other]:
                assert sizes[key] >= sizes[other], (key, other)


def test_proportional_sizes_give_the_larger_of_two_huge_counts_no_fewer():
    # Arrange: two counts past float64's 2**53, a remainder of 1/2 -+ 2**-61 each.
    counts = {"y": 2**60, "x": 2**60 + 1}

    # Act
    sizes = stacking.proportional_sizes(counts, 3)

    # Assert: exact largest remainder gives the extra bucket to "x".
    assert sizes == {"y": 1, "x": 2}


@pytest.mark.parametrize(
    ("counts", "total", "minimum", "message"),
    [
        ({}, 10, 1, "proportional_sizes: no counts given"),
        ({"a": 3, "b": -1}, 10, 1, "count of 'b' is negative"),
        ({"a": 3}, 0, 1, "total and minimum must be >= 1, got 0 and 1"),
        ({"a": 3}, 10, 0, "total and minimum must be >= 1, got 10 and 0"),
    ],
    ids=["empty", "negative-count", "total-below-1", "minimum-below-1"],
)
def test_proportional_sizes_reject_bad_input(counts, total, minimum, message):
    with pytest.raises(ValueError, match=message):
        stacking.proportional_sizes(counts, total, minimum=minimum)
