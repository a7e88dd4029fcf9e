"""The dynamic table: behaviour that the model test does not reach."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptive_jax import _numerics, ids, table
from adaptive_jax.table import _host, _index

INT32_MAX = np.iinfo(np.int32).max
insert = jax.jit(table.lookup_or_insert, donate_argnums=0)
remove = jax.jit(table.remove, donate_argnums=0)
remove_rows = jax.jit(table.remove_rows, donate_argnums=0)
lookup = jax.jit(table.lookup)


def all_true(n):
    return jnp.ones((n,), bool)


def state_arrays(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


# Bad input: raised before any state changes.


@pytest.mark.parametrize(
    "capacity", [0, -3, 2**28 + 1], ids=["zero", "negative", "huge"]
)
def test_capacity_out_of_range_raises(capacity):
    with pytest.raises(ValueError, match="capacity"):
        table.DynamicTable.create(capacity)


@pytest.mark.parametrize("capacity", [2.0, True, "8"], ids=["float", "bool", "str"])
def test_capacity_not_an_int_raises(capacity):
    with pytest.raises(ValueError, match="capacity must be an int"):
        table.DynamicTable.create(capacity)


@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"]
)
def test_float_keys_raise_type_error_naming_the_dtype(dtype):
    state = table.DynamicTable.create(4)
    keys = jnp.zeros((3,), dtype)
    with pytest.raises(TypeError, match=jnp.dtype(dtype).name):
        table.lookup_or_insert(state, keys, all_true(3))
    with pytest.raises(TypeError, match=jnp.dtype(dtype).name):
        table.lookup(state, keys)


def test_insert_mask_of_another_shape_raises():
    state = table.DynamicTable.create(4)
    with pytest.raises(ValueError, match=r"insert mask has shape \(2,\).*\(3,\)"):
        table.lookup_or_insert(state, ids.from_numpy([1, 2, 3]), all_true(2))


def test_valid_mask_of_another_shape_raises():
    state = table.DynamicTable.create(4)
    with pytest.raises(ValueError, match="valid mask"):
        table.remove(state, ids.from_numpy([1, 2, 3]), valid=jnp.ones((3, 1), bool))


def test_float_insert_mask_raises():
    state = table.DynamicTable.create(4)
    with pytest.raises(TypeError, match="float32"):
        table.lookup_or_insert(state, ids.from_numpy([1, 2]), jnp.ones(2))


def test_row_mask_of_another_shape_raises():
    state = table.DynamicTable.create(4)
    with pytest.raises(ValueError, match=r"row_mask has shape \(3,\), expected \(4,\)"):
        table.remove_rows(state, jnp.ones(3, bool))


# Behaviour.


def test_repeats_share_one_row_and_new_keys_take_rows_in_order():
    state = table.DynamicTable.create(8)
    keys = ids.from_numpy([[5, -5, 5], [2**63 - 1, -5, -(2**63)]])
    state, rows = insert(state, keys, jnp.ones((2, 3), bool))
    assert rows.tolist() == [[0, 1, 0], [2, 1, 3]]
    assert state.freq[:4].tolist() == [2, 2, 1, 1]
    assert int(state.inserts) == 4


def test_same_inputs_give_the_same_state_bit_for_bit():
    rng = np.random.default_rng(1)
    batches = [rng.integers(-50, 50, 64) for _ in range(5)]
    states = []
    for _ in range(2):
        state = table.DynamicTable.create(40)
        for batch in batches:
            state, _ = insert(state, ids.from_numpy(batch), all_true(64))
            state, _ = remove(state, ids.from_numpy(batch[:7]))
        states.append(state_arrays(state))
    for a, b in zip(*states, strict=True):
        np.testing.assert_array_equal(a, b)


def test_full_table_refuses_new_keys_without_overwriting_any():
    state = table.DynamicTable.create(2)
    state, rows = insert(state, ids.from_numpy([10, 11]), all_true(2))
    state, rows = insert(state, ids.from_numpy([12, 10, 12, 13]), all_true(4))
    assert rows.tolist() == [-1, 0, -1, -1]
    assert int(state.overflows) == 3  # one per refused entry
    assert lookup(state, ids.from_numpy([10, 11, 12, 13])).tolist() == [0, 1, -1, -1]
    state, _ = remove(state, ids.from_numpy([10]))
    state, rows = insert(state, ids.from_numpy([13]), all_true(1))
    assert rows.tolist() == [0]  # the freed row, and nothing of key 10 left in it
    assert state.freq.tolist() == [1, 1]


def test_entries_without_insert_only_look_up():
    state = table.DynamicTable.create(4)
    state, rows = insert(
        state, ids.from_numpy([3, 3, 4]), jnp.array([False, True, False])
    )
    assert rows.tolist() == [-1, 0, -1]
    state, rows = insert(state, ids.from_numpy([3, 4]), jnp.array([False, False]))
    assert rows.tolist() == [0, -1]
    assert int(state.overflows) == 0


def test_invalid_entries_touch_nothing():
    state = table.DynamicTable.create(4)
    state, _ = insert(state, ids.from_numpy([1]), all_true(1))
    before = state_arrays(state)
    state, rows = insert(
        state, ids.from_numpy([1, 2]), all_true(2), valid=jnp.zeros(2, bool)
    )
    assert rows.tolist() == [-1, -1]
    for a, b in zip(before, state_arrays(state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_empty_batches_keep_their_shape_and_change_nothing():
    state = table.DynamicTable.create(4)
    empty = ids.from_numpy(np.zeros((0, 3), np.int64))
    before = state_arrays(state)
    assert lookup(state, empty).shape == (0, 3)
    state, rows = jax.jit(table.lookup_or_insert)(state, empty, jnp.ones((0, 3), bool))
    assert rows.shape == (0, 3)
    state, rows = jax.jit(table.remove)(state, empty)
    assert rows.shape == (0, 3)
    for a, b in zip(before, state_arrays(state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_churn_leaves_no_tombstones():
    state = table.DynamicTable.create(64)
    rng = np.random.default_rng(0)
    keep = ids.from_numpy(np.arange(8))
    state, _ = insert(state, keep, all_true(8))
    for _ in range(40):
        batch = ids.from_numpy(rng.integers(-(2**62), 2**62, 48))
        state, _ = insert(state, batch, all_true(48))
        state, _ = remove(state, batch)
    tags = np.asarray(state.slots[:, : _index.WAYS])
    assert int(np.sum(tags != _index.FREE_TAG)) == int(table.num_live(state)) == 8
    assert int(state.removals) == 40 * 48
    assert lookup(state, keep).tolist() == list(range(8))


def test_remove_rows_frees_rows_and_their_keys():
    state = table.DynamicTable.create(4)
    state, _ = insert(state, ids.from_numpy([7, 8, 9]), all_true(3))
    state = remove_rows(state, jnp.array([True, False, True, True]))
    assert lookup(state, ids.from_numpy([7, 8, 9])).tolist() == [-1, 1, -1]
    assert table.live_rows(state).tolist() == [False, True, False, False]
    assert int(state.removals) == 2
    assert state.freq.tolist() == [0, 1, 0, 0]


def test_remove_returns_the_rows_held_and_frees_each_once():
    state = table.DynamicTable.create(4)
    state, _ = insert(state, ids.from_numpy([7, 8]), all_true(2))
    state, rows = remove(state, ids.from_numpy([8, 9, 8]))
    assert rows.tolist() == [1, -1, 1]
    assert int(state.num_free) == 3
    assert int(state.removals) == 1


def test_last_step_records_the_global_step():
    state = table.DynamicTable.create(4)
    state, _ = insert(state, ids.from_numpy([1, 2]), all_true(2))
    state = table.advance_step(state, 5)
    state, _ = insert(state, ids.from_numpy([2]), all_true(1))
    assert state.last_step[:2].tolist() == [0, 5]
    assert int(state.step) == 5


def test_frequency_saturates_instead_of_wrapping():
    state = table.DynamicTable.create(2)
    state, _ = insert(state, ids.from_numpy([1]), all_true(1))
    state = state.replace(freq=state.freq.at[0].set(INT32_MAX - 1))
    state, _ = insert(state, ids.from_numpy([1, 1, 1]), all_true(3))
    assert int(state.freq[0]) == INT32_MAX


def test_event_counters_saturate():
    assert (
        int(_numerics.saturating_add(jnp.int32(INT32_MAX - 1), jnp.int32(5)))
        == INT32_MAX
    )


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 1024, 1057, 70_001])
def test_exclusive_count_is_the_prefix_sum(n):
    mask = np.random.default_rng(n).random(n) < 0.4
    got = jax.jit(_numerics.exclusive_count)(jnp.asarray(mask))
    assert np.asarray(got).tolist() == (np.cumsum(mask) - mask).tolist()


def test_prefix_sums_of_large_counts_are_exact():
    x = np.full((1100,), 2**20 + 1, np.int32)  # sums past 2**30, three levels
    got = _numerics._exclusive_sum(jnp.asarray(x))
    assert np.asarray(got).tolist() == (np.cumsum(x) - x).tolist()


def test_x64_on_and_off_give_the_same_rows():
    keys = np.array([0, -1, 2**63 - 1, -(2**63), 2**32, -5, 0], np.int64)
    state = table.DynamicTable.create(16)
    state, rows_off = insert(state, ids.from_numpy(keys), all_true(7))
    with jax.enable_x64(True):
        state64 = table.DynamicTable.create(16)
        state64, rows_on = jax.jit(table.lookup_or_insert)(
            state64, jnp.asarray(keys), all_true(7)
        )
        found = table.lookup(state64, jnp.asarray(keys))
    assert (
        rows_off.tolist() == rows_on.tolist() == found.tolist() == [0, 1, 2, 3, 4, 5, 0]
    )


def test_a_key_whose_buckets_are_both_full_is_refused_and_counted():
    state = table.DynamicTable.create(64)
    key = ids.from_numpy([42])
    cand = _index.candidates(key, state.slots)
    # Fill both candidate buckets with slots of other keys (tags that differ).
    other_tag = cand.tag[0] + 2
    for bucket in (int(cand.left[0]), int(cand.right[0])):
        state = state.replace(
            slots=state.slots.at[bucket, : _index.WAYS]
            .set(other_tag)
            .at[bucket, _index.WAYS :]
            .set(jnp.arange(_index.WAYS, dtype=jnp.int32))
        )
    state, rows = insert(state, ids.from_numpy([42, 43, 42]), all_true(3))
    assert rows[0] == rows[2] == -1 and rows[1] >= 0
    assert int(state.overflows) == 2
    assert int(state.inserts) == 1


def test_a_shared_tag_sends_the_probe_to_the_exact_path():
    state = table.DynamicTable.create(64)
    state, rows = insert(state, ids.from_numpy([100, 200]), all_true(2))
    key = ids.from_numpy([100])
    cand = _index.candidates(key, state.slots)
    # Forge a second slot with the tag of key 100 but the row of key 200, at the
    # highest way of its left bucket, where the fast path looks first.
    slots = np.asarray(state.slots).copy()
    left = int(cand.left[0])
    free_ways = np.flatnonzero(slots[left, : _index.WAYS] == _index.FREE_TAG)
    way = int(free_ways.max())
    slots[left, way] = int(cand.tag[0])
    slots[left, _index.WAYS + way] = 1
    state = state.replace(slots=jnp.asarray(slots))
    assert lookup(state, ids.from_numpy([100, 200, 300])).tolist() == [0, 1, -1]
    state, rows = remove(state, ids.from_numpy([100]))
    assert rows.tolist() == [0]
    assert lookup(state, ids.from_numpy([100, 200])).tolist() == [-1, 1]


def copies_of_state(compiled_text: str, state: table.DynamicTable) -> list[str]:
    """Lines of compiled HLO that copy an array shaped like a leaf of `state`."""
    types = set()
    for leaf in jax.tree.leaves(state):
        if leaf.ndim:
            kind = {"int32": "s32", "uint32": "u32"}[leaf.dtype.name]
            types |= {
                f"{kind}[{','.join(map(str, leaf.shape))}]",
                f"{kind}[{leaf.size}]",
            }
    copies = []
    for line in compiled_text.splitlines():
        match = re.search(r"= (\w+\[[\d,]+\])\S* copy\(", line)
        if match and match.group(1) in types:
            copies.append(line.strip())
    return copies


@pytest.mark.parametrize("name", ["lookup_or_insert", "remove", "remove_rows"])
def test_updates_work_in_place_without_copying_the_table(name):
    capacity = 2**14
    state = table.DynamicTable.create(capacity)
    batch = ids.from_numpy(np.arange(256))
    args = {
        "lookup_or_insert": (batch, all_true(256)),
        "remove": (batch,),
        "remove_rows": (jnp.zeros(capacity, bool),),
    }[name]
    fn = jax.jit(getattr(table, name), donate_argnums=0)
    assert copies_of_state(fn.lower(state, *args).compile().as_text(), state) == []
    out = fn(state, *args)
    assert state.slots.is_deleted()  # donated: the result took over its buffer
    jax.block_until_ready(out)


STEP_FUNCTIONS = {
    "lookup": lambda state, batch: (state, batch),
    "lookup_or_insert": lambda state, batch: (state, batch, all_true(16)),
    "remove": lambda state, batch: (state, batch),
    "remove_rows": lambda state, batch: (state, table.live_rows(state)),
    "advance_step": lambda state, batch: (state,),
    "live_rows": lambda state, batch: (state,),
    "num_live": lambda state, batch: (state,),
}


@pytest.mark.parametrize("name", sorted(STEP_FUNCTIONS))
def test_step_functions_jit_keep_shapes_and_compile_once(name):
    jitted = jax.jit(getattr(table, name))
    sizes = []
    for seed in range(2):
        state = jax.jit(table.DynamicTable.create, static_argnums=0)(33)
        batch = ids.from_numpy(np.random.default_rng(seed).integers(0, 99, 16))
        state, _ = insert(state, batch, all_true(16))
        out = jitted(*STEP_FUNCTIONS[name](state, batch))
        jax.block_until_ready(out)
        sizes.append(jitted._cache_size())
    assert sizes[1] == sizes[0]
    if isinstance(out, table.DynamicTable):
        shapes = jax.tree.map(lambda a: (a.shape, a.dtype), out)
        assert shapes == jax.tree.map(lambda a: (a.shape, a.dtype), state)


def fill_and_churn(capacity: int, rounds: int) -> table.DynamicTable:
    """Fills a table to capacity, then replaces half its keys `rounds` times."""
    rng = np.random.default_rng(capacity)
    batch = 2**14
    state = table.DynamicTable.create(capacity)
    keys = rng.integers(-(2**63), 2**63 - 1, capacity, dtype=np.int64)
    for chunk in np.split(keys, capacity // batch):
        state, _ = insert(state, ids.from_numpy(chunk), all_true(batch))
    for _ in range(rounds):
        drop = rng.choice(capacity, capacity // 2, replace=False)
        for chunk in np.split(keys[drop], len(drop) // batch):
            state, _ = remove(state, ids.from_numpy(chunk))
        keys[drop] = rng.integers(-(2**63), 2**63 - 1, len(drop), dtype=np.int64)
        for chunk in np.split(keys[drop], len(drop) // batch):
            state, _ = insert(state, ids.from_numpy(chunk), all_true(batch))
    return state


def assert_full_without_bucket_overflow(state: table.DynamicTable):
    assert int(table.num_live(state)) == state.capacity
    assert int(state.overflows) == 0
    tags = np.asarray(state.slots[:, : _index.WAYS])
    assert (tags != _index.FREE_TAG).sum(axis=1).max() <= _index.WAYS - 1


def test_a_full_table_under_churn_keeps_a_free_way_in_every_bucket():
    # The table of the benchmark, full, then half its keys replaced five times.
    assert_full_without_bucket_overflow(fill_and_churn(2**21, rounds=5))


def test_insert_absent_marks_every_entry_of_an_inserted_key():
    state = table.DynamicTable.create(3)
    state, _ = insert(state, ids.from_numpy([1]), all_true(1))

    @jax.jit
    def fn(state, keys, mask):
        return table.insert_absent(state, table.find(state, keys), mask, valid=mask)

    state, rows, new = fn(state, ids.from_numpy([2, 1, 2, 3, 4]), all_true(5))
    assert rows.tolist() == [1, 0, 1, 2, -1]
    assert new.tolist() == [True, False, True, True, False]


def test_weighted_entries_count_as_their_repeats():
    """An entry of weight w (the repeats of a key merged before an exchange)
    counts w occurrences in `freq` and in `overflows`, as w entries would."""
    keys, weights = [7, 8, 9, 10], [3, 1, 2, 4]
    repeated = [k for k, w in zip(keys, weights, strict=True) for _ in range(w)]

    @jax.jit
    def insert_weighted(state, keys, weights):
        n = keys.shape[0]
        found = table.find(state, keys)
        return table.insert_absent(
            state, found, all_true(n), valid=all_true(n), weights=weights
        )[0]

    def run(batch, weights):
        state = table.DynamicTable.create(2)  # 9 and 10 find no room
        return insert_weighted(state, ids.from_numpy(batch), weights)

    merged = run(keys, jnp.asarray(weights, jnp.int32))
    plain = run(repeated, None)
    assert int(merged.overflows) == int(plain.overflows) == 6
    assert merged.freq.tolist() == plain.freq.tolist() == [3, 1]
    np.testing.assert_array_equal(
        np.asarray(merged.row_keys), np.asarray(plain.row_keys)
    )


# A table built on the host (serving's index of an export's keys).


def test_a_table_built_on_the_host_finds_each_key_at_its_row():
    rng = np.random.default_rng(3)
    edges = np.array([0, -1, 2**63 - 1, -(2**63), 2**32, 7], np.int64)
    keys = np.unique(np.concatenate([edges, rng.integers(-(2**63), 2**63 - 1, 4090)]))
    rng.shuffle(keys)
    state = _host.holding(keys, 4096)  # full: every row holds a key
    assert lookup(state, ids.from_numpy(keys)).tolist() == list(range(keys.size))
    absent = rng.integers(-(2**63), 2**63 - 1, 2000)
    absent = absent[~np.isin(absent, keys)]
    assert set(lookup(state, ids.from_numpy(absent)).tolist()) == {-1}
    # The same as inserting them in order, for every counter a lookup reads.
    inserted, _ = insert(
        table.DynamicTable.create(4096), ids.from_numpy(keys), all_true(keys.size)
    )
    for field in ("row_keys", "free_list", "num_free", "freq", "inserts"):
        assert np.array_equal(getattr(state, field), getattr(inserted, field)), field
    # Then it trains as a table: a new key after a removal takes the freed row.
    state, _ = remove(state, ids.from_numpy(keys[:1]))
    state, rows = insert(state, ids.from_numpy([12345]), all_true(1))
    assert rows.tolist() == [0]


def test_the_host_index_hashes_keys_as_the_device_does():
    keys = np.random.default_rng(5).integers(-(2**63), 2**63 - 1, 300)
    bits = keys.view(np.uint64)
    words = ((bits >> np.uint64(32)).astype(np.uint32), bits.astype(np.uint32))
    slots = _index.create(1000)
    device = _index.candidates(ids.from_numpy(keys), slots)
    host = _host.candidates(*words, slots.shape[0])
    for a, b in zip(device, host, strict=True):
        assert np.asarray(a).tolist() == b.tolist()


def test_the_host_index_refuses_repeated_keys():
    with pytest.raises(ValueError, match="not distinct"):
        _host.holding(np.array([3, 4, 3]), 4)
