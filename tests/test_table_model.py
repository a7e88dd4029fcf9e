"""Model-based test of the dynamic table against a plain Python dict.

Hypothesis draws sequences of lookups, inserts, removals (by key and by row) and
step changes over a small pool of keys (the int64 extremes included), so that
batches repeat keys, tables fill up and removed keys come back. After every step
the table must agree with the model exactly: the rows each call returns, the rows
of all keys, the free list, the counters.
"""

from __future__ import annotations

import dataclasses
import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings

from adaptive_jax import ids, table
from adaptive_jax.table import _index

BATCH = 8
CAPACITIES = (1, 3, 8, 21)
QUERIES = 32  # fixed shape of the invariant check's lookups
POOL = [0, -1, 1, 2**31, -(2**31) - 1, 2**32, -(2**63), 2**63 - 1, 7, 12345678901]


@dataclasses.dataclass
class Model:
    """The table's semantics, one entry at a time."""

    capacity: int
    rows: dict[int, int] = dataclasses.field(default_factory=dict)
    free: list[int] = dataclasses.field(default_factory=list)
    freq: dict[int, int] = dataclasses.field(default_factory=dict)
    last_step: dict[int, int] = dataclasses.field(default_factory=dict)
    step: int = 0
    inserts: int = 0
    removals: int = 0
    overflows: int = 0

    def __post_init__(self):
        self.free = list(range(self.capacity - 1, -1, -1))

    def _touch(self, row):
        self.freq[row] = self.freq.get(row, 0) + 1
        self.last_step[row] = self.step

    def lookup(self, keys, valid):
        pairs = zip(keys, valid, strict=True)
        return [self.rows.get(key, -1) if ok else -1 for key, ok in pairs]

    def lookup_or_insert(self, keys, insert, valid):
        before = dict(self.rows)  # entries without insert only see this
        out = []
        for key, wants, ok in zip(keys, insert, valid, strict=True):
            row = -1
            if ok and key in before:
                row = before[key]
            elif ok and wants and key in self.rows:
                row = self.rows[key]
            elif ok and wants and self.free:
                row = self.free.pop()
                self.rows[key] = row
                self.inserts += 1
            elif ok and wants:
                self.overflows += 1
            if row >= 0:
                self._touch(row)
            out.append(row)
        return out

    def _free(self, key):
        row = self.rows.pop(key)
        self.free.append(row)
        self.freq.pop(row, None)
        self.last_step.pop(row, None)
        self.removals += 1

    def remove(self, keys, valid):
        out = self.lookup(keys, valid)
        for key, ok in zip(keys, valid, strict=True):
            if ok and key in self.rows:
                self._free(key)
        return out

    def remove_rows(self, mask):
        by_row = {row: key for key, row in self.rows.items()}
        for row in range(self.capacity):
            if mask[row] and row in by_row:
                self._free(by_row[row])


@functools.cache
def jitted(name):
    fn = getattr(table, name)
    updates = name in ("lookup_or_insert", "remove", "remove_rows", "advance_step")
    return jax.jit(fn, donate_argnums=0) if updates else jax.jit(fn)


keys_st = st.lists(
    st.one_of(st.sampled_from(POOL), st.integers(-(2**63), 2**63 - 1)),
    min_size=1,
    max_size=BATCH,
)
op_st = st.one_of(
    st.tuples(st.just("lookup_or_insert"), keys_st, st.lists(st.booleans())),
    st.tuples(st.just("lookup"), keys_st),
    st.tuples(st.just("remove"), keys_st),
    st.tuples(
        st.just("remove_rows"), st.lists(st.booleans(), max_size=max(CAPACITIES))
    ),
    st.tuples(st.just("advance_step"), st.integers(1, 3)),
)


def padded(keys):
    """A fixed batch shape (one compile per capacity): keys, then invalid zeros."""
    valid = [True] * len(keys) + [False] * (BATCH - len(keys))
    return keys + [0] * (BATCH - len(keys)), valid


def check_invariants(state: table.DynamicTable, model: Model, pool: list[int]):
    capacity = model.capacity
    # Every key of the model is found at its row, and every other key is absent.
    queries = (list(model.rows) + pool + [0] * QUERIES)[:QUERIES]
    found = np.asarray(jitted("lookup")(state, ids.from_numpy(queries)))
    assert found.tolist() == [model.rows.get(k, -1) for k in queries]
    # Rows: each live key at exactly one row, the index holding each live row once.
    slots = np.asarray(state.slots)
    tags, slot_rows = slots[:, : _index.WAYS], slots[:, _index.WAYS :]
    occupied = tags != _index.FREE_TAG
    assert np.all(tags[occupied] % 2 == 1), "a claim was left in the index"
    assert np.all(slot_rows[~occupied] == _index.EMPTY)
    assert sorted(slot_rows[occupied].tolist()) == sorted(model.rows.values())
    row_keys = ids.to_numpy(ids.Ids(state.row_keys[:, 0], state.row_keys[:, 1]))
    for key, row in model.rows.items():
        assert row_keys[row] == key
    # Live rows + free rows = capacity, no row on the free list twice.
    num_free = int(state.num_free)
    free = np.asarray(state.free_list)[:num_free].tolist()
    assert free == model.free
    assert len(set(free)) == num_free
    assert num_free + len(model.rows) == capacity
    live = np.asarray(jitted("live_rows")(state))
    assert sorted(np.flatnonzero(live).tolist()) == sorted(model.rows.values())
    assert int(table.num_live(state)) == len(model.rows)
    # Counters.
    freq = np.asarray(state.freq)
    last_step = np.asarray(state.last_step)
    for row in range(capacity):
        assert freq[row] == model.freq.get(row, 0)
        assert last_step[row] == model.last_step.get(row, 0)
    assert int(state.step) == model.step
    assert int(state.inserts) == model.inserts
    assert int(state.removals) == model.removals
    assert int(state.overflows) == model.overflows


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(capacity=st.sampled_from(CAPACITIES), ops=st.lists(op_st, max_size=12))
def test_table_matches_dict_model(capacity, ops):
    state = table.DynamicTable.create(capacity)
    model = Model(capacity)
    for op in ops:
        name = op[0]
        if name == "advance_step":
            state = jitted(name)(state, op[1])
            model.step += op[1]
        elif name == "remove_rows":
            mask = (op[1] + [False] * capacity)[:capacity]
            state = jitted(name)(state, jnp.asarray(mask))
            model.remove_rows(mask)
        else:
            keys, valid = padded(op[1])
            batch = ids.from_numpy(keys)
            if name == "lookup":
                got = jitted(name)(state, batch, valid=jnp.asarray(valid))
                want = model.lookup(keys, valid)
            elif name == "remove":
                state, got = jitted(name)(state, batch, valid=jnp.asarray(valid))
                want = model.remove(keys, valid)
            else:
                insert = (op[2] + [True] * BATCH)[:BATCH]
                state, got = jitted(name)(
                    state, batch, jnp.asarray(insert), valid=jnp.asarray(valid)
                )
                want = model.lookup_or_insert(keys, insert, valid)
            assert np.asarray(got).tolist() == want, (name, keys)
        check_invariants(state, model, POOL)
