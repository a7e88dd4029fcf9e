"""Serving export, delta and read-only lookup, against the training lookup."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import serving
from adaptive_jax import table as table_lib
from adaptive_jax.column import statistics
from adaptive_jax.persist import export

BATCH, SIZE = 48, 128
MASKED = fc.embedding_column(
    fc.categorical_column_with_adaptive_embedding(
        "user",
        40,
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=48, evict_option=aj.GlobalStepEvict(3)
        ),
        migration="deeprec",  # a new row is its bucket, as serving gives it
    ),
    4,
)
ADMITTED = fc.embedding_column(
    fc.categorical_column_with_adaptive_embedding(
        "query",
        30,
        dtype="string",
        ev_option=aj.EmbeddingVariableOption(
            capacity=128, filter_option=aj.CounterFilter(2)
        ),
        migration="deeprec",
    ),
    3,
    "sqrtn",
)
PLAIN = fc.embedding_column(
    fc.categorical_column_with_embedding(
        "item",
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=256, init_option=aj.InitializerOption(default_value_dim=16)
        ),
    ),
    4,
    "sum",
)
PLAIN_FILTERED = fc.embedding_column(
    fc.categorical_column_with_embedding(
        "shop",
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=64,
            filter_option=aj.CounterFilter(3),
            init_option=aj.InitializerOption(default_value_no_permission=0.5),
        ),
    ),
    2,
)
STATIC = fc.embedding_column(
    fc.categorical_column_with_hash_bucket("city", 20, dtype="string"), 2, "sum"
)
COLUMNS = [MASKED, ADMITTED, PLAIN, PLAIN_FILTERED, STATIC]
FTRL = aj.optim.ftrl(0.2, l1_regularization_strength=0.3)


def user_mask(users: np.ndarray) -> np.ndarray:
    """A per-id routing, as a frequency threshold would give."""
    return (users % 3 != 0).astype(np.int32)


def raw_batch(step: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(step)
    users = rng.zipf(1.4, BATCH) % 100
    queries = [
        [f"q{v}" for v in rng.zipf(1.3, rng.integers(0, 3)) % 200] for _ in range(BATCH)
    ]
    items = [list(rng.integers(-50, 150, rng.integers(1, 4))) for _ in range(BATCH)]
    shops = rng.zipf(1.3, BATCH) % 60
    cities = [f"c{v}" for v in rng.integers(0, 50, BATCH)]
    features = {
        "user": users[:, None],
        "query": queries,
        "item": items,
        "shop": shops[:, None],
        "city": np.asarray(cities)[:, None],
    }
    return features, {"user": user_mask(users)}


@jax.jit
def train_step(state, features, g):
    """A step; and the embeddings it looked up, before its update."""
    emb, state, residuals = fc.input_layer(features, COLUMNS, state, optimizer=FTRL)
    d_emb = jax.grad(lambda e: jnp.sum(jnp.tanh(e) * g))(emb)
    state = fc.apply_gradients(state, residuals, d_emb, COLUMNS, FTRL)
    return fc.maybe_evict(state, COLUMNS, FTRL, every=4), emb


def prepared_batch(step: int) -> tuple[dict, jax.Array]:
    features, masks = raw_batch(step)
    prepared = fc.prepare(features, COLUMNS, adaptive_mask_tensors=masks, size=SIZE)
    return prepared, jax.random.normal(jax.random.key(step), (BATCH, 15))


def train(state, start: int, stop: int):
    for step in range(start, stop):
        state, _ = train_step(state, *prepared_batch(step))
    return state


@pytest.fixture(scope="module")
def states():
    """The state after 8 steps and after 14."""
    early = train(fc.init_state(COLUMNS, FTRL, jax.random.key(0)), 0, 8)
    late = train(jax.tree.map(jnp.copy, early), 8, 14)
    return early, late


def training_lookup(state, features, masks):
    """What the training step's input layer gives (it inserts and migrates)."""
    prepared = fc.prepare(features, COLUMNS, adaptive_mask_tensors=masks, size=SIZE)
    g = jnp.zeros((BATCH, 15))
    _, emb = train_step(jax.tree.map(jnp.copy, state), prepared, g)
    return np.asarray(emb)


def assert_exports_equal(a: serving.Export, b: serving.Export) -> None:
    assert sorted(a.columns) == sorted(b.columns)
    for name, column in a.columns.items():
        other = b.columns[name]
        for field in dataclasses.fields(column):
            x, y = getattr(column, field.name), getattr(other, field.name)
            if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                assert x.dtype == y.dtype, (name, field.name)
                np.testing.assert_array_equal(x, y, err_msg=f"{name}.{field.name}")
            else:
                assert x == y, (name, field.name)


def test_the_export_holds_the_live_rows_and_no_optimizer_state(states):
    _, state = states
    exported = export.export(state, COLUMNS, drop_zero_rows=False)
    for name, column in exported.columns.items():
        dynamic = state[name].dynamic
        if dynamic is None:
            assert column.kind == "static" and column.keys.size == 0
            continue
        live = np.flatnonzero(np.asarray(table_lib.live_rows(dynamic.table)))
        row_keys = np.asarray(dynamic.table.row_keys)[live].astype(np.uint64)
        keys = ((row_keys[:, 0] << np.uint64(32)) | row_keys[:, 1]).view(np.int64)
        order = np.argsort(keys)
        np.testing.assert_array_equal(column.keys, keys[order])
        np.testing.assert_array_equal(
            column.values, np.asarray(dynamic.values)[live][order]
        )
        np.testing.assert_array_equal(
            column.freqs, np.asarray(dynamic.table.freq)[live][order]
        )
        np.testing.assert_array_equal(
            column.versions, np.asarray(dynamic.table.last_step)[live][order]
        )
        assert column.step == 14
    assert exported.columns["user_embedding"].kind == "adaptive"
    assert exported.columns["item_embedding"].default_values.shape == (16, 4)
    assert exported.columns["shop_embedding"].default_values is None
    assert exported.columns["shop_embedding"].no_permission_value == 0.5


@pytest.mark.parametrize("step", [14, 15])
def test_serving_gives_the_training_lookup(states, step):
    _, state = states
    built = serving.build(export.export(state, COLUMNS, drop_zero_rows=False))
    features, masks = raw_batch(step)  # 14: seen ids mostly; 15: new ones too
    served = serving.lookup(built, features, masks=masks, size=SIZE)
    np.testing.assert_array_equal(served, training_lookup(state, features, masks))


def test_without_masks_an_id_with_a_row_reads_it(states):
    _, state = states
    exported = export.export(state, COLUMNS, drop_zero_rows=False)
    features, _ = raw_batch(16)
    users = features["user"][:, 0]
    has_row = np.isin(users, exported.columns["user_embedding"].keys)
    masks = {"user": has_row.astype(np.int32)}
    served = serving.lookup(serving.build(exported), features, size=SIZE)
    np.testing.assert_array_equal(served, training_lookup(state, features, masks))


def test_zero_rows_are_dropped_and_fall_back_to_their_buckets(states):
    _, state = states
    full = export.export(state, COLUMNS, drop_zero_rows=False)
    trimmed = export.export(state, COLUMNS)
    column, kept = full.columns["user_embedding"], trimmed.columns["user_embedding"]
    zero = ~np.any(column.values != 0, axis=1)
    assert zero.any() and not zero.all(), "the data must zero some rows, not all"
    np.testing.assert_array_equal(kept.keys, column.keys[~zero])
    np.testing.assert_array_equal(kept.values, column.values[~zero])
    built = serving.build(serving.Export({"user_embedding": kept}))
    zeroed = column.keys[zero]
    served = serving.lookup(
        built, {"user": zeroed[:, None]}, masks={"user": np.ones(zeroed.size, int)}
    )
    buckets = aj.hashing.to_hash_bucket_fast(zeroed, 40)
    np.testing.assert_array_equal(served[:, :4], column.static[buckets])


@pytest.mark.parametrize("score", export.SCORES)
def test_top_k_keeps_the_highest_scores(states, score):
    _, state = states
    full = export.export(state, COLUMNS).columns["query_embedding"]
    capped = export.export(state, COLUMNS, top_k=7, score=score).columns[
        "query_embedding"
    ]
    scores = {
        "freq": full.freqs,
        "version": full.versions,
        "norm": np.sum(full.values.astype(np.float64) ** 2, axis=1),
    }[score]
    order = sorted(range(full.keys.size), key=lambda i: (-scores[i], full.keys[i]))
    expected = np.sort(full.keys[order[:7]])
    np.testing.assert_array_equal(capped.keys, expected)
    assert full.keys.size > 7


def test_top_k_by_column_name(states):
    _, state = states
    exported = export.export(state, COLUMNS, top_k={"item_embedding": 3})
    assert exported.columns["item_embedding"].keys.size == 3
    assert exported.columns["query_embedding"].keys.size > 3


def test_bfloat16_halves_the_values_and_serves_them_rounded(states, tmp_path):
    _, state = states
    wide = export.export(state, COLUMNS)
    narrow = export.export(state, COLUMNS, value_dtype="bfloat16")
    for name, column in wide.columns.items():
        other = narrow.columns[name]
        assert other.values.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(
            other.values, column.values.astype(ml_dtypes.bfloat16)
        )
        if column.static is not None:
            assert other.static.nbytes * 2 == column.static.nbytes
    serving.save(narrow, tmp_path / "bf16")
    loaded = serving.load(tmp_path / "bf16")
    assert_exports_equal(loaded, narrow)
    features, masks = raw_batch(14)
    np.testing.assert_allclose(
        serving.lookup(serving.build(loaded), features, masks=masks, size=SIZE),
        serving.lookup(serving.build(wide), features, masks=masks, size=SIZE),
        rtol=2**-7,
        atol=2**-7,
    )


def test_save_and_load_round_trip(states, tmp_path):
    _, state = states
    exported = export.export(state, COLUMNS)
    serving.save(exported, tmp_path / "e")
    assert_exports_equal(serving.load(tmp_path / "e"), exported)
    with pytest.raises(FileExistsError):
        serving.save(exported, tmp_path / "e")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_export_names_the_column_and_array(states, tmp_path, damage):
    _, state = states
    serving.save(export.export(state, COLUMNS), tmp_path / "e")
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    file = manifest["columns"]["query_embedding"]["arrays"]["values"]["file"]
    path = tmp_path / "e" / file
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x40
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    with pytest.raises(
        serving.ExportError, match="column 'query_embedding': array 'values'"
    ):
        serving.load(tmp_path / "e")


def test_no_export_is_named(tmp_path):
    with pytest.raises(serving.ExportError, match="no readable export"):
        serving.load(tmp_path)


def test_a_serving_process_needs_neither_optax_nor_orbax(states, tmp_path):
    _, state = states
    serving.save(export.export(state, COLUMNS, drop_zero_rows=False), tmp_path / "e")
    features, masks = raw_batch(15)
    np.save(tmp_path / "expected.npy", training_lookup(state, features, masks))
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        directory = {str(tmp_path)!r}
        sys.path.insert(0, directory)
        from features import features, masks
        from adaptive_jax import serving
        built = serving.build(serving.load(directory + "/e"))
        served = serving.lookup(built, features, masks=masks, size={SIZE})
        np.testing.assert_array_equal(served, np.load(directory + "/expected.npy"))
        loaded = [m for m in sys.modules if m.split(".")[0] in ("optax", "orbax")]
        assert not loaded, loaded
        print("served")
        """
    )
    (tmp_path / "features.py").write_text(
        "import numpy as np\n"
        f"features = {_literal(features)}\nmasks = {_literal(masks)}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served" in result.stdout


def _literal(tree) -> str:
    """Python source for a dict of arrays and lists, without pickles."""
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, np.ndarray):
        return f"np.array({tree.tolist()!r})"
    return repr(jax.tree.map(lambda x: x.item() if hasattr(x, "item") else x, tree))


@pytest.mark.parametrize(
    "options",
    [{}, {"top_k": 10, "score": "norm"}, {"value_dtype": "bfloat16"}],
    ids=["default", "top_k", "bfloat16"],
)
def test_a_delta_patches_the_old_export_into_the_new(states, tmp_path, options):
    early, late = states
    old = export.export(early, COLUMNS, **options)
    new = export.export(late, COLUMNS, **options)
    change = export.delta(late, COLUMNS, old, **options)
    serving.save(change, tmp_path / "d")
    loaded = serving.load(tmp_path / "d")
    assert isinstance(loaded, serving.Delta)
    assert_exports_equal(serving.apply_delta(old, loaded), new)
    user = change.columns["user_embedding"]
    assert user.since == 8 and user.step == 14
    assert user.removed.size > 0, "eviction between the exports leaves tombstones"
    assert user.static_buckets.size > 0
    assert change.columns["city_embedding"].static_buckets.size > 0


def test_a_delta_carries_only_the_rows_that_changed(states):
    early, late = states
    old = export.export(early, COLUMNS)
    item = export.delta(late, COLUMNS, old).columns["item_embedding"]
    stayed = np.isin(old.columns["item_embedding"].keys, item.keys)
    assert (
        0
        < item.keys.size
        < export.export(late, COLUMNS).columns["item_embedding"].keys.size
    )
    assert not stayed.all()
    # An empty delta: nothing changed since the export.
    same = export.delta(late, COLUMNS, export.export(late, COLUMNS))
    assert all(c.keys.size == c.removed.size == 0 for c in same.columns.values())
    assert all(c.static_buckets.size == 0 for c in same.columns.values())


def test_a_delta_applies_to_the_export_of_its_step_only(states):
    early, late = states
    old = export.export(early, COLUMNS)
    change = export.delta(late, COLUMNS, old)
    newer = export.export(late, COLUMNS)
    with pytest.raises(ValueError, match="since step 8, the export is of step 14"):
        serving.apply_delta(newer, change)
    with pytest.raises(ValueError, match="after the state's step"):
        export.delta(early, COLUMNS, newer)


def test_the_size_report(states):
    _, state = states
    exported = export.export(state, COLUMNS)
    report = export.size_report(state, exported)
    for name, column_state in state.items():
        row = report[name]
        leaves = jax.tree.leaves(column_state)
        assert row["training_bytes"] == sum(np.asarray(x).nbytes for x in leaves)
        assert row["export_bytes"] == exported.columns[name].nbytes
        distinct = statistics.distinct_ids(column_state.stats.distinct)
        assert row["distinct_ids"] == round(distinct)
        dim = exported.columns[name].dimension
        assert row["plain_dynamic_export_bytes"] == row["distinct_ids"] * (16 + 4 * dim)
    seen = {int(u) for step in range(14) for u in raw_batch(step)[0]["user"][:, 0]}
    assert abs(report["user_embedding"]["distinct_ids"] - len(seen)) <= 2
    total = report["total"]
    assert total["export_bytes"] == exported.nbytes


def test_bad_options_are_named(states):
    _, state = states
    with pytest.raises(ValueError, match="score must be one of"):
        export.export(state, COLUMNS, top_k=3, score="clicks")
    with pytest.raises(ValueError, match="column 'item_embedding': top_k must be"):
        export.export(state, COLUMNS, top_k={"item_embedding": -1})
    with pytest.raises(ValueError, match="top_k\\['nope'\\]"):
        export.export(state, COLUMNS, top_k={"nope": 1})
    with pytest.raises(ValueError, match="value_dtype must be one of"):
        export.export(state, COLUMNS, value_dtype="float16")
    with pytest.raises(ValueError, match="the state has columns"):
        export.export(state, COLUMNS[:2])
    wider = dataclasses.replace(PLAIN, dimension=5)
    with pytest.raises(
        ValueError,
        match=r"column 'item' \(state\['item_embedding'\]\): the state's "
        r"dynamic/values is float32\[\d+, 4\], the column expects float32\[\d+, 5\]",
    ):
        export.export(state, [MASKED, ADMITTED, wider, PLAIN_FILTERED, STATIC])


def test_bad_serving_inputs_are_named(states):
    _, state = states
    built = serving.build(export.export(state, COLUMNS))
    features, masks = raw_batch(3)
    with pytest.raises(ValueError, match="masks\\['item'\\]: no adaptive column"):
        serving.lookup(built, features, masks={"item": np.ones(3)})
    with pytest.raises(ValueError, match="column 'user': adaptive_mask_tensors"):
        serving.lookup(built, features, masks={"user": np.ones(3)})
    del features["city"]
    with pytest.raises(ValueError, match="column 'city': feature 'city' is missing"):
        serving.lookup(built, features, masks=masks, size=SIZE)


def test_an_export_with_a_repeated_key_is_refused_naming_the_column(states):
    _, state = states
    exported = export.export(state, COLUMNS)
    name = next(n for n, c in exported.columns.items() if c.keys.size >= 2)
    column = exported.columns[name]
    keys = column.keys.copy()
    keys[1] = keys[0]
    columns = dict(exported.columns) | {name: dataclasses.replace(column, keys=keys)}
    with pytest.raises(ValueError, match=f"column '{name}': .*not distinct"):
        serving.build(dataclasses.replace(exported, columns=columns))


def test_serving_lookup_is_jittable_and_reads_only(states):
    _, state = states
    built = serving.build(export.export(state, COLUMNS))
    features, masks = raw_batch(14)
    prepared = serving.prepare(built, features, masks=masks, size=SIZE)
    before = jax.tree.map(np.asarray, built)
    out = jax.jit(serving.lookup)(built, prepared)
    expected = serving.lookup(built, features, masks=masks, size=SIZE)
    np.testing.assert_array_equal(out, expected)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, built))
