"""The bucket probe's controls and its interval over seeds."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import adaptive_jax as aj
from adaptive_jax import feature_column as fc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import bucket_probe  # noqa: E402


def _tables():
    column = fc.categorical_column_with_adaptive_embedding(
        "c", hash_bucket_size=4, dtype="int64", ev_option=aj.EmbeddingVariableOption()
    )
    embedding = fc.embedding_column(column, 3, initializer=aj.initializers.ones())
    return fc.init_state([embedding], aj.optim.ftrl(0.1), jax.random.key(0))


def test_zero_buckets_sets_every_bucket_to_zero_and_keeps_the_rest():
    tables = _tables()
    zeroed = bucket_probe.zero_buckets(tables)

    (name,) = tables
    assert np.all(np.asarray(tables[name].static.values) == 1.0)  # the input kept
    assert np.all(np.asarray(zeroed[name].static.values) == 0.0)
    for kept, was in zip(
        jax.tree.leaves(zeroed[name].static.slots),
        jax.tree.leaves(tables[name].static.slots),
        strict=True,
    ):
        np.testing.assert_array_equal(kept, was)
    np.testing.assert_array_equal(
        zeroed[name].default_values, tables[name].default_values
    )


def test_a_step_held_at_zero_hands_back_zero_buckets_and_the_step_s_other_outputs():
    def step(params, opt_state, tables, batch):
        grown = {k: v.replace(static=v.static.replace(values=v.static.values + batch))
                 for k, v in tables.items()}  # fmt: skip
        return params + 1, opt_state, grown, jnp.float32(batch)

    params, opt_state, tables, loss = bucket_probe._held_at_zero(step)(
        0, "opt", _tables(), 2.0
    )
    assert (params, opt_state, float(loss)) == (1, "opt", 2.0)
    assert all(np.all(np.asarray(s.static.values) == 0.0) for s in tables.values())


@pytest.mark.parametrize("seeds", [2, 3, 6, 10])
def test_the_interval_over_seeds_is_student_t(seeds):
    rng = np.random.default_rng(seeds)
    rows = [
        {"a": rng.normal(0.8, 0.01), "b": rng.normal(0.79, 0.01)} for _ in range(seeds)
    ]
    diffs = np.array([r["a"] - r["b"] for r in rows])
    half = stats.t.ppf(0.975, seeds - 1) * diffs.std(ddof=1) / np.sqrt(seeds)

    got = bucket_probe.paired(rows, "a", "b")

    assert got["mean"] == pytest.approx(diffs.mean())
    assert got["low"] == pytest.approx(diffs.mean() - half, abs=2e-3 * half)
    assert got["high"] == pytest.approx(diffs.mean() + half, abs=2e-3 * half)


def test_one_seed_gives_a_mean_without_an_interval():
    assert bucket_probe.paired([{"a": 0.8, "b": 0.7}], "a", "b") == {
        "mean": pytest.approx(0.1)
    }


@pytest.mark.parametrize("probe", ["bucket_probe", "choice_probe"])
def test_a_set_not_built_is_refused_by_name(probe, tmp_path, monkeypatch, capsys):
    import choice_probe  # noqa: PLC0415 (beside bucket_probe, on the same path)

    module = {"bucket_probe": bucket_probe, "choice_probe": choice_probe}[probe]
    monkeypatch.setattr(bucket_probe, "data_directory", lambda name: tmp_path / name)

    with pytest.raises(SystemExit):
        module.main(["--data", "nowhere"])

    error = capsys.readouterr().err
    assert "--data nowhere" in error and "is missing" in error
