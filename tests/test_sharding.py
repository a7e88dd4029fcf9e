"""Partitions on one device and over meshes of 1, 2, 4 and 8 CPU devices.

The reference is always the unpartitioned column on one device: a partitioned
or sharded run must give its embeddings and its trained state, up to the order
of float sums (the static table's gradients arrive from several devices).
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _device_hash
from adaptive_jax.parallel import sharding
from adaptive_jax.persist import checkpoint, export

FTRL = aj.optim.ftrl(0.2, l1_regularization_strength=0.01)
BATCH = 32
TOLERANCE = 1e-5  # float summation order only


def columns(parts=None, *, capacity=256):
    user = fc.categorical_column_with_adaptive_embedding(
        "user",
        40,
        dtype="int64",
        partition_num=parts,
        ev_option=aj.EmbeddingVariableOption(
            capacity=capacity, evict_option=aj.GlobalStepEvict(3)
        ),
    )
    item = fc.categorical_column_with_embedding(
        "item",
        dtype="int64",
        partition_num=parts,
        ev_option=aj.EmbeddingVariableOption(
            capacity=4096, filter_option=aj.CounterFilter(2)
        ),
    )
    return [fc.embedding_column(user, 4), fc.embedding_column(item, 3, "sum")]


def raw_batch(step):
    rng = np.random.default_rng(step)
    users = rng.zipf(1.4, BATCH) % 100
    items = [list(rng.integers(0, 150, rng.integers(1, 3))) for _ in range(BATCH)]
    features = {"user": users[:, None], "item": items}
    return features, {"user": (users % 3 != 0).astype(np.int32)}


def train(cols, layout=None, steps=4, size=128):
    """Embeddings of each step, the final state and the dense layer, with
    eviction every 2 steps."""
    state = fc.init_state(cols, FTRL, jax.random.key(0))
    if layout is not None:
        state = layout.place(state, cols)
    dense = DENSE
    outputs = []
    for step in range(steps):
        features, masks = raw_batch(step)
        if layout is None:
            batch = fc.prepare(features, cols, adaptive_mask_tensors=masks, size=size)
        else:
            batch = sharding.prepare(
                features, cols, layout, adaptive_mask_tensors=masks, size=size
            )
        emb, state, dense = train_step(cols, state, dense, batch, step, layout)
        outputs.append(np.asarray(emb))
    return np.stack(outputs), jax.device_get(state), np.asarray(dense)


DENSE = np.full((7, 3), 0.2, np.float32)  # a dense layer over the 4 + 3 dims


@jax.jit
def model_gradients(emb, dense, noise):
    """The gradients of a loss that depends on the embeddings and the layer."""

    def loss(emb, dense):
        return jnp.sum(jnp.tanh(emb @ dense) * noise)

    return jax.grad(loss, argnums=(0, 1))(emb, dense)


def train_step(cols, state, dense, batch, step, layout):
    """One step of a model with a dense layer (data parallel: under a layout
    the embeddings arrive split over the batch): the lookup, the gradients of
    a loss that depends on the embeddings and the layer, the sparse update,
    SGD on the layer, and eviction every 2 steps."""
    emb, state, residuals = fc.input_layer(
        batch, cols, state, optimizer=FTRL, layout=layout
    )
    noise = jax.random.normal(jax.random.key(step), (emb.shape[0], DENSE.shape[1]))
    d_emb, d_dense = model_gradients(emb, dense, noise)
    state = fc.apply_gradients(state, residuals, d_emb, cols, FTRL, layout=layout)
    state = fc.maybe_evict(state, cols, FTRL, every=2, layout=layout)
    return emb, state, dense - 0.1 * d_dense


@pytest.fixture(scope="module")
def reference():
    cols = columns()
    embeddings, state, dense = train(cols)
    return embeddings, export.export(state, cols, drop_zero_rows=False), dense


def assert_same_training(reference, embeddings, state, dense, cols):
    ref_embeddings, ref_export, ref_dense = reference
    np.testing.assert_allclose(embeddings, ref_embeddings, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(dense, ref_dense, rtol=0, atol=TOLERANCE)
    exported = export.export(state, cols, drop_zero_rows=False)
    for name, want in ref_export.columns.items():
        got = exported.columns[name]
        order_want, order_got = np.argsort(want.keys), np.argsort(got.keys)
        np.testing.assert_array_equal(got.keys[order_got], want.keys[order_want])
        np.testing.assert_allclose(
            got.values[order_got], want.values[order_want], atol=TOLERANCE
        )
        np.testing.assert_array_equal(got.freqs[order_got], want.freqs[order_want])
        if want.static is not None:
            np.testing.assert_allclose(got.static, want.static, atol=TOLERANCE)


def test_the_tests_have_8_devices():
    assert [d.platform for d in jax.devices("cpu")] == ["cpu"] * 8


# On one device, P = 1 and 4 run in `make test-all`; in `make test`, the
# overflow test holds 2 partitions per device (the mapped path).
@pytest.mark.parametrize(
    "parts", [pytest.param(p, marks=pytest.mark.slow) for p in (1, 4)]
)
def test_partitions_on_one_device_train_like_one_table(reference, parts):
    cols = columns(parts)
    embeddings, state, dense = train(cols)
    assert state["user_embedding"].dynamic.values.shape[0] == parts
    assert_same_training(reference, embeddings, state, dense, cols)


# 8 devices in `make test`; 1, 2 and 4 in `make test-all` (each mesh costs
# its own compiles).
@pytest.mark.parametrize(
    "devices",
    [pytest.param(d, marks=pytest.mark.slow) for d in (1, 2, 4)] + [8],
)
def test_a_mesh_trains_like_one_device(reference, devices):
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:devices]), ("data",))
    # The static update gathers 2 entries per device in the steps where every
    # device has no more static ids (every step on 8 devices), and all of them
    # in the others (some steps on 4 devices, every step on 1 or 2).
    static_limit = 2
    layout = sharding.Layout(
        mesh, "data", static_limits={"user_embedding": static_limit}
    )
    most = [
        (raw_batch(step)[1]["user"].reshape(devices, -1) == 0).sum(axis=1).max()
        for step in range(4)
    ]
    assert max(most) <= static_limit if devices == 8 else max(most) > static_limit
    if devices == 4:
        assert min(most) <= static_limit
    cols = columns(8)
    embeddings, state, dense = train(cols, layout, size=128 // devices)
    assert_same_training(reference, embeddings, state, dense, cols)
    summary = fc.summary(state)
    assert summary["user_embedding"]["exchange_overflows"] == 0


def split_columns(parts=None):
    """An adaptive column whose promoted rows copy their bucket's slots (so the
    slots travel with the keys too), and a plain hash-bucket column."""
    user = fc.categorical_column_with_adaptive_embedding(
        "user",
        40,
        dtype="int64",
        partition_num=parts,
        migration="copy",
        ev_option=aj.EmbeddingVariableOption(
            capacity=256, evict_option=aj.GlobalStepEvict(3)
        ),
    )
    item = fc.categorical_column_with_hash_bucket("item", 24, dtype="int64")
    return [fc.embedding_column(user, 4), fc.embedding_column(item, 3, "sum")]


@pytest.fixture(scope="module")
def split_reference():
    cols = split_columns()
    embeddings, state, dense = train(cols)
    return embeddings, export.export(state, cols, drop_zero_rows=False), dense


@pytest.mark.parametrize("devices", [pytest.param(2, marks=pytest.mark.slow), 8])
def test_static_tables_split_by_rows_train_like_one_device(split_reference, devices):
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:devices]), ("data",))
    layout = sharding.Layout(mesh, "data", split_static=True)
    cols = split_columns(8)
    placed = layout.place(fc.init_state(cols, FTRL, jax.random.key(0)), cols)
    for name, buckets in (("user_embedding", 40), ("item_embedding", 24)):
        for leaf in jax.tree.leaves(placed[name].static):
            shards = leaf.addressable_shards
            assert len(shards) == devices
            assert {s.data.shape[0] for s in shards} == {buckets // devices}
    embeddings, state, dense = train(cols, layout, size=128 // devices)
    assert_same_training(split_reference, embeddings, state, dense, cols)


def test_a_split_static_table_restores_onto_another_layout(tmp_path):
    cols = split_columns(8)
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")), ("data",))
    split = sharding.Layout(mesh, "data", split_static=("user_embedding",))
    state = split.place(fc.init_state(cols, FTRL, jax.random.key(0)), cols)
    with checkpoint.Checkpointer(tmp_path) as checkpoints:
        checkpoints.save(1, state)
    pair = jax.sharding.Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
    replicated = sharding.Layout(pair, "data")
    for target in (
        fc.init_state(cols, FTRL, jax.random.key(5)),
        replicated.place(fc.init_state(cols, FTRL, jax.random.key(5)), cols),
    ):
        with checkpoint.Checkpointer(tmp_path) as checkpoints:
            restored = checkpoints.restore(target)
        static = restored["user_embedding"].static.values
        assert static.sharding == target["user_embedding"].static.values.sharding
        np.testing.assert_array_equal(
            static, np.asarray(state["user_embedding"].static.values)
        )


def test_a_static_table_that_cannot_split_is_refused():
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:3]), ("data",))
    cols = split_columns(6)
    state = fc.init_state(cols, FTRL, jax.random.key(0))
    layout = sharding.Layout(mesh, "data", split_static=True)
    with pytest.raises(ValueError, match="column 'user'.*axis 'data'.*bucket_size 40"):
        layout.place(state, cols)
    with pytest.raises(ValueError, match="split_static must be True, False or"):
        sharding.Layout(mesh, "data", split_static="user_embedding")
    pair = jax.sharding.Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
    unknown = sharding.Layout(pair, "data", split_static=("site_embedding",))
    with pytest.raises(ValueError, match=r"split_static names \['site_embedding'\]"):
        unknown.place(state, cols)
    dynamic = columns(2)
    no_static = sharding.Layout(pair, "data", split_static=("item_embedding",))
    with pytest.raises(ValueError, match="'item_embedding', which has no static"):
        no_static.place(fc.init_state(dynamic, FTRL, jax.random.key(0)), dynamic)


def test_the_partition_moves_whole_virtual_buckets():
    keys = ids_lib.from_numpy(np.arange(-5000, 5000, 7, dtype=np.int64))
    virtual = np.asarray(_device_hash.virtual_bucket(keys))
    for parts in (1, 3, 8, 64):
        owner = np.asarray(_device_hash.partition(keys, parts))
        assert owner.min() >= 0 and owner.max() < parts
        np.testing.assert_array_equal(
            owner, virtual * parts // _device_hash.VIRTUAL_BUCKETS
        )
    # Doubling the partitions splits each one in two: no key changes halves.
    four = np.asarray(_device_hash.partition(keys, 4))
    eight = np.asarray(_device_hash.partition(keys, 8))
    np.testing.assert_array_equal(eight // 2, four)
    assert len(np.unique(eight)) == 8  # and they spread


OVERFLOW_PARTITIONS = 4


def overflow_setup(limit):
    """A step on 2 devices of 2 partitions each; then buffers of `limit`."""
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
    cols = columns(OVERFLOW_PARTITIONS)[:1]
    wide = sharding.Layout(mesh, "data")
    narrow = sharding.Layout(mesh, "data", limits={"user_embedding": limit})
    state = wide.place(fc.init_state(cols, FTRL, jax.random.key(0)), cols)
    users = (np.arange(BATCH) % 12)[:, None]
    features = {"user": users}
    masks = {"user": np.ones(BATCH, np.int32)}
    # Buckets on the host: the test's model reads them.
    batch = sharding.prepare(
        features, cols, wide, adaptive_mask_tensors=masks, int_buckets="host"
    )
    emb, state, residuals = fc.input_layer(
        batch, cols, state, optimizer=FTRL, layout=wide
    )
    state = fc.apply_gradients(
        state, residuals, jnp.ones_like(emb), cols, FTRL, layout=wide
    )
    return cols, wide, narrow, state, batch, users


def test_an_overflowing_buffer_serves_the_static_bucket_and_counts():
    limit = 2
    cols, wide, narrow, state, batch, users = overflow_setup(limit)
    before = jax.device_get(state)
    full, _, _ = fc.input_layer(batch, cols, state, optimizer=FTRL, layout=wide)
    emb, after, _ = fc.input_layer(batch, cols, state, optimizer=FTRL, layout=narrow)
    # The model: on each device, the first `limit` distinct keys bound for each
    # partition (in order of first occurrence) travel, with all their repeats;
    # the other entries read their bucket.
    keys = ids_lib.from_numpy(users[:, 0].astype(np.int64))
    owner = np.asarray(_device_hash.partition(keys, OVERFLOW_PARTITIONS))
    buckets = np.asarray(batch["user_embedding"].buckets)[
        np.asarray(batch["user_embedding"].ids.valid)
    ]
    served = np.asarray(full).copy()
    share = BATCH // 2
    overflows = 0
    for device in range(2):
        for part in range(OVERFLOW_PARTITIONS):
            entries = [
                i
                for i in range(device * share, (device + 1) * share)
                if owner[i] == part
            ]
            travelling = list(dict.fromkeys(users[i, 0] for i in entries))[:limit]
            for i in entries:
                if users[i, 0] not in travelling:
                    served[i] = np.asarray(before["user_embedding"].static.values)[
                        buckets[i]
                    ]
                    overflows += 1
    assert overflows > 0
    np.testing.assert_array_equal(np.asarray(emb), served)
    stats = fc.summary(jax.device_get(after))["user_embedding"]
    assert stats["exchange_overflows"] == overflows


def sample_batches(cols):
    batches = []
    for step in range(3):
        features, masks = raw_batch(step)
        batches.append(fc.prepare(features, cols, adaptive_mask_tensors=masks))
    return batches


def test_suggested_limits_cover_the_busiest_pair():
    cols = columns(8)
    batches = sample_batches(cols)
    limits = sharding.suggest_limits(batches, cols, devices=4, margin=1.0)
    # The model: the most distinct keys one device sends one partition (repeats
    # travel as one entry), to a multiple of 8.
    for column in cols:
        most = 0
        for batch in batches:
            inputs = batch[column.name]
            valid = np.array(inputs.ids.valid)
            if inputs.to_dynamic is not None:
                valid &= np.asarray(inputs.to_dynamic)
            keys = ids_lib.to_numpy(inputs.ids.values)
            owner = np.asarray(_device_hash.partition(inputs.ids.values, 8))
            device = np.asarray(inputs.ids.row_ids) // (BATCH // 4)
            sent = {}
            for i in np.flatnonzero(valid):
                sent.setdefault((device[i], owner[i]), set()).add(keys[i])
            most = max(most, max(len(k) for k in sent.values()))
        assert limits[column.name] == -(-most // 8) * 8
    doubled = sharding.suggest_limits(batches, cols, devices=4, margin=2.0)
    for name, limit in limits.items():
        assert limit <= doubled[name] <= 2 * limit + 8


def test_suggested_static_limits_cover_the_busiest_device():
    cols = columns(8)
    batches = sample_batches(cols)
    limits = sharding.suggest_static_limits(batches, cols, devices=4, margin=1.0)
    # Only the adaptive column has a mask (and a static table).
    assert set(limits) == {"user_embedding"}
    # The model: the most masked-out ids of one device's 8 examples.
    most = max(
        (raw_batch(step)[1]["user"].reshape(4, -1) == 0).sum(axis=1).max()
        for step in range(3)
    )
    assert limits["user_embedding"] == -(-most // 8) * 8


@pytest.mark.slow  # a mesh of its own: its own compiles
def test_suggested_limits_leave_no_overflow():
    cols = columns(8)
    limits = sharding.suggest_limits(sample_batches(cols), cols, devices=4)
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:4]), ("data",))
    layout = sharding.Layout(mesh, "data", limits=limits)
    _, state, _ = train(cols, layout, steps=3, size=32)
    for name in limits:
        assert fc.summary(state)[name]["exchange_overflows"] == 0


def looked_up(cols):
    """A state with rows in both tables (promoted from their buckets, admitted
    by the filter, counted): the lookups of 3 batches, without training."""
    state = fc.init_state(cols, FTRL, jax.random.key(0))
    for step in (0, 1, 0):
        features, masks = raw_batch(step)
        _, state, _ = fc.input_layer(
            features, cols, state, optimizer=FTRL, adaptive_mask_tensors=masks
        )
    return state


@pytest.mark.parametrize(
    ("source", "target"),
    [
        pytest.param(None, 4, marks=pytest.mark.slow),
        pytest.param(4, 8, marks=pytest.mark.slow),
        pytest.param(8, 2, marks=pytest.mark.slow),
        pytest.param(4, None, marks=pytest.mark.slow),
    ],
)
def test_relayout_onto_other_partitions_keeps_the_lookups(source, target):
    cols_from, cols_to = columns(source), columns(target)
    state = looked_up(cols_from)
    moved = checkpoint.relayout(state, fc.init_state(cols_to, FTRL, jax.random.key(5)))
    queries = {"user": np.arange(100)[:, None], "item": np.arange(100)[:, None]}
    masks = {"user": np.ones(100, np.int32)}

    def read(cols, state):
        emb, _, _ = fc.input_layer(
            queries, cols, state, optimizer=FTRL, adaptive_mask_tensors=masks
        )
        return np.asarray(emb)

    np.testing.assert_array_equal(read(cols_to, moved), read(cols_from, state))
    # The rows keep their counters (the item column's sketch of another shape
    # starts empty: counts of ids without a row are not kept).
    keys = ids_lib.from_numpy(np.arange(100, dtype=np.int64))
    np.testing.assert_array_equal(
        fc.counts(moved, cols_to[0], keys), fc.counts(state, cols_from[0], keys)
    )
    for name in ("user_embedding", "item_embedding"):
        want = fc.summary(state)[name]["live_rows"]
        assert fc.summary(moved)[name]["live_rows"] == want


@pytest.mark.slow  # the unpartitioned target too small: test_checkpoint
def test_relayout_refuses_a_partition_too_small():
    state = looked_up(columns())
    target = fc.init_state(columns(4, capacity=8), FTRL, jax.random.key(5))
    with pytest.raises(checkpoint.CheckpointError, match="column 'user_embedding'"):
        checkpoint.relayout(state, target)


@pytest.mark.parametrize("bad", [0, -1, _device_hash.VIRTUAL_BUCKETS + 1, 2.0])
def test_a_bad_partition_num_names_the_option(bad):
    with pytest.raises(ValueError, match="column 'user'.*partition_num"):
        fc.categorical_column_with_embedding("user", partition_num=bad)


def test_a_mesh_axis_that_does_not_divide_the_partitions_is_refused():
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:4]), ("data",))
    layout = sharding.Layout(mesh, "data")
    cols = columns(6)
    state = fc.init_state(cols, FTRL, jax.random.key(0))
    with pytest.raises(ValueError, match="column 'user'.*axis 'data'.*4 devices"):
        layout.place(state, cols)
    features, masks = raw_batch(0)
    with pytest.raises(ValueError, match="axis 'data'"):
        sharding.prepare(features, cols, layout, adaptive_mask_tensors=masks)
    unpartitioned = columns()
    with pytest.raises(ValueError, match="column 'user'.*needs partition_num"):
        layout.place(
            fc.init_state(unpartitioned, FTRL, jax.random.key(0)), unpartitioned
        )


def test_a_bad_layout_names_the_axis_or_option():
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
    with pytest.raises(ValueError, match="axis 'model' is not an axis"):
        sharding.Layout(mesh, "model")
    with pytest.raises(ValueError, match=r"limits\['user_embedding'\]"):
        sharding.Layout(mesh, "data", limits={"user_embedding": 0})
    with pytest.raises(ValueError, match=r"static_limits\['user_embedding'\]"):
        sharding.Layout(mesh, "data", static_limits={"user_embedding": -2})
    cpu, other = jax.devices("cpu")[0], types.SimpleNamespace(platform="gpu", id=99)
    mixed = types.SimpleNamespace(
        axis_names=("data",), devices=np.array([cpu, other], object)
    )
    with pytest.raises(ValueError, match="mixes devices of kinds"):
        sharding.Layout(mixed, "data")


def test_a_batch_that_does_not_split_over_the_devices_is_refused():
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:4]), ("data",))
    layout = sharding.Layout(mesh, "data")
    cols = columns(4)
    features = {"user": np.arange(6)[:, None], "item": np.arange(6)[:, None]}
    with pytest.raises(ValueError, match="6 examples does not split evenly"):
        sharding.prepare(
            features, cols, layout, adaptive_mask_tensors={"user": np.ones(6, np.int32)}
        )


WORKER = pathlib.Path(__file__).parent / "multihost_worker.py"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two fresh processes compile everything anew: about 90 s
def test_two_processes_train_like_one(reference, tmp_path):
    port, out = free_port(), tmp_path / "out.npz"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(process), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for process in (0, 1)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(logs)
    got = np.load(out)
    ref_embeddings, ref_export, ref_dense = reference
    np.testing.assert_allclose(got["embeddings"], ref_embeddings, atol=TOLERANCE)
    np.testing.assert_allclose(got["dense"], ref_dense, atol=TOLERANCE)
    for name, want in ref_export.columns.items():
        keys = got[f"{name}.keys"]
        order_want, order_got = np.argsort(want.keys), np.argsort(keys)
        np.testing.assert_array_equal(keys[order_got], want.keys[order_want])
        np.testing.assert_allclose(
            got[f"{name}.values"][order_got], want.values[order_want], atol=TOLERANCE
        )
        if want.static is not None:
            np.testing.assert_allclose(
                got[f"{name}.static"], want.static, atol=TOLERANCE
            )


def stacked_columns(parts=None):
    """An adaptive column stacking two features, each its own static segment,
    and a plain column of one feature beside it (whose rows per device are
    not the stacked column's)."""
    option = aj.EmbeddingVariableOption(capacity=128)
    members = [
        fc.categorical_column_with_adaptive_embedding(
            key, buckets, dtype="int64", partition_num=parts, ev_option=option
        )
        for key, buckets in (("site", 8), ("user", 24))
    ]
    item = fc.categorical_column_with_hash_bucket("item", 16, dtype="int64")
    return [
        fc.embedding_column(fc.stacked_column(members, "fields"), 4),
        fc.embedding_column(item, 2),
    ]


def stacked_batch(step):
    rng = np.random.default_rng(100 + step)
    features = {k: rng.zipf(1.5, (BATCH, 1)) % 60 for k in ("site", "user")}
    masks = {k: (v[:, 0] % 2).astype(np.int32) for k, v in features.items()}
    features["item"] = rng.integers(0, 30, (BATCH, 1))
    return features, masks


def train_stacked(cols, layout=None, size=None):
    state = fc.init_state(cols, FTRL, jax.random.key(0))
    if layout is not None:
        state = layout.place(state, cols)
    outputs = []
    for step in range(3):
        features, masks = stacked_batch(step)
        if layout is None:
            batch = fc.prepare(features, cols, adaptive_mask_tensors=masks)
        else:
            batch = sharding.prepare(
                features, cols, layout, adaptive_mask_tensors=masks, size=size
            )
        emb, state, residuals = fc.input_layer(
            batch, cols, state, optimizer=FTRL, layout=layout
        )
        d_emb = jnp.sin(emb + step)  # any gradient that depends on the lookup
        state = fc.apply_gradients(state, residuals, d_emb, cols, FTRL, layout=layout)
        outputs.append(np.asarray(emb))
    return np.stack(outputs), jax.device_get(state)


def test_a_stacked_column_on_a_mesh_trains_like_one_device():
    # Arrange
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")), ("data",))
    layout = sharding.Layout(mesh, "data")

    # Act
    want, want_state = train_stacked(stacked_columns())
    got, got_state = train_stacked(stacked_columns(8), layout, size=16)

    # Assert: each device's examples keep their fields side by side.
    assert got.shape == want.shape == (3, BATCH, 2 * 4 + 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(
        got_state["fields_embedding"].static.values,
        want_state["fields_embedding"].static.values,
        atol=TOLERANCE,
    )


def distinct_per_pair(inputs, devices, local):
    """`[devices, devices]`: distinct buckets each device's share reads from
    each owner, from a batch prepared for one device (the reference)."""
    valid = np.asarray(inputs.ids.valid)
    rows = np.asarray(inputs.buckets)[valid]
    source = np.asarray(inputs.ids.row_ids)[valid] // (BATCH // devices)
    counts = np.zeros((devices, devices), np.int64)
    for s, bucket in set(zip(source.tolist(), rows.tolist(), strict=True)):
        counts[s, bucket // local] += 1
    return counts


def test_split_static_tables_with_bounded_buffers_train_like_one_device(
    split_reference,
):
    # Arrange: a limit that some steps fit and some do not.
    devices, limit = 8, 2
    cols = split_columns(8)
    buckets = {"user_embedding": 40, "item_embedding": 24}
    over, fitted = dict.fromkeys(buckets, 0), []
    for step in range(4):
        features, masks = raw_batch(step)
        batch = fc.prepare(
            features, split_columns(), adaptive_mask_tensors=masks, int_buckets="host"
        )
        for name, size in buckets.items():
            counts = distinct_per_pair(batch[name], devices, size // devices)
            over[name] += int(np.maximum(counts - limit, 0).sum())
            fitted.append(counts.max() <= limit)
    assert any(fitted) and not all(fitted)  # both branches are taken
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")), ("data",))
    layout = sharding.Layout(
        mesh,
        "data",
        split_static=True,
        split_static_limits=dict.fromkeys(buckets, limit),
    )

    # Act
    embeddings, state, dense = train(cols, layout, size=128 // devices)

    # Assert: what one device trains, and every entry past a buffer counted.
    assert_same_training(split_reference, embeddings, state, dense, cols)
    summary = fc.summary(state)
    assert {name: summary[name]["split_overflows"] for name in buckets} == over


def test_bounded_split_buffers_are_in_the_compiled_step():
    # The all-to-alls' operands, as XLA:CPU splits them per destination: with
    # a limit of 3 on the item column (dim 3), pieces of 3 rows and 3 bucket
    # ids appear beside the exact ones (the lax.cond's other branch).
    mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")), ("data",))
    cols = split_columns(8)

    def shapes(layout):
        state = layout.place(fc.init_state(cols, FTRL, jax.random.key(0)), cols)
        features, masks = raw_batch(0)
        batch = sharding.prepare(features, cols, layout, adaptive_mask_tensors=masks)
        hlo = (
            jax.jit(
                lambda s, b: fc.input_layer(b, cols, s, optimizer=FTRL, layout=layout)[
                    0
                ]
            )
            .lower(state, batch)
            .compile()
            .as_text()
        )
        return {
            shape
            for line in hlo.splitlines()
            if " all-to-all(" in line
            for shape in re.findall(r"[fsu]32\[[0-9,]*\]", line.split("all-to-all(")[0])
        }

    exact = shapes(sharding.Layout(mesh, "data", split_static=True))
    bounded = shapes(
        sharding.Layout(
            mesh, "data", split_static=True, split_static_limits={"item_embedding": 3}
        )
    )
    assert {"f32[1,1,3,3]", "s32[1,1,3]"} <= bounded - exact, (exact, bounded)


def test_suggested_split_limits_cover_the_batches_they_saw():
    cols = split_columns()
    raw = list(map(raw_batch, range(4)))
    # The batches leave int ids' buckets to the step; the reference reads the
    # host's.
    batches = [fc.prepare(f, cols, adaptive_mask_tensors=m) for f, m in raw]
    host = [
        fc.prepare(f, cols, adaptive_mask_tensors=m, int_buckets="host") for f, m in raw
    ]
    limits = sharding.suggest_split_limits(batches, cols, 8, margin=1.0)
    for name, size in (("user_embedding", 40), ("item_embedding", 24)):
        most = max(distinct_per_pair(b[name], 8, size // 8).max() for b in host)
        assert most <= limits[name] < most + 8 and limits[name] % 8 == 0
