"""The budget benchmark: its configurations, targets and table, and a quick
run end to end on a small synthetic set."""

import json
import math
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import budget_bench  # noqa: E402


def test_every_family_is_sized_at_every_budget_and_dynamic_evicts_under_pressure():
    configs = budget_bench.configurations(["1/4", "1/64"])

    assert configs[budget_bench.PER_ID] == {"family": "dynamic"}  # by the data
    assert len(configs) == 1 + 2 * len(budget_bench.FAMILIES)
    for fraction in ("1/4", "1/64"):
        for family in budget_bench.FAMILIES:
            config = configs[f"{family}@{fraction}"]
            assert config["family"] == family and config["budget"] == fraction
            assert config["pressure_evict"] == (family == "dynamic")


def _payload(diffs: dict[str, float], per_id: float) -> dict:
    """A payload at the budget 1/16 with these AUC differences from adaptive."""
    paired = {
        f"{family}@1/16": {"mean": d, "low": d - 0.001, "high": d + 0.001}
        for family, d in diffs.items()
    }
    paired["adaptive@1/16"] = {"mean": 0.0, "low": 0.0, "high": 0.0}
    paired["per-id"] = {"mean": per_id, "low": per_id - 0.002, "high": per_id + 0.002}
    return {"paired_vs_adaptive": {"1/16": paired}}


def test_the_targets_name_the_best_other_family_and_the_gap_to_a_row_per_id():
    # Arrange: static beats adaptive by 0.003; the per-id table by 0.001.
    payload = _payload({"static": 0.003, "filtered": -0.01, "dynamic": 0.0}, 0.001)

    # Act
    got = budget_bench.targets(payload)

    # Assert
    best = got["adaptive_best_at_1/16"]
    assert best["against"] == "static@1/16" and best["met"] is False
    assert best["value"] == pytest.approx(-0.003)
    assert best["interval"] == pytest.approx([-0.004, -0.002])
    near = got["adaptive_vs_per_id_at_1/16"]
    assert near["value"] == pytest.approx(-0.001) and near["met"] is True
    assert near["interval"] == pytest.approx([-0.003, 0.001])


def test_adaptive_ahead_of_every_family_meets_the_target_and_far_from_per_id_misses():
    got = budget_bench.targets(
        _payload({"static": -0.002, "filtered": -0.001, "dynamic": 0.0}, 0.0025)
    )

    assert got["adaptive_best_at_1/16"]["met"] is True  # a tie counts
    assert got["adaptive_vs_per_id_at_1/16"]["met"] is False


@pytest.mark.slow
def test_the_budget_bench_runs_end_to_end_on_a_small_synthetic_set(
    tmp_path, monkeypatch
):
    # Arrange: the data set in a temporary cache, small.
    monkeypatch.setenv("ADAPTIVE_JAX_DATA", str(tmp_path / "cache" / "synthetic"))
    out = tmp_path / "budget"

    # Act
    budget_bench.main(
        ["--data", "synthetic", "--seeds", "0", "--fractions", "1/4", "1/1024",
         "--num-train", "3000", "--num-test", "1000", "--out", str(out)]
    )  # fmt: skip

    # Assert: each budget a fraction of the per-id table's training bytes, each
    # family's state within it; a budget below a family's least state skipped.
    payload = json.loads((out / "summary.json").read_text())
    summary = payload["summary"]
    per_id = summary["per-id"]["param_bytes"]["mean"]
    for family in budget_bench.FAMILIES:
        sized = summary[f"{family}@1/4"]
        assert sized["budget"] == math.floor(per_id / 4)
        assert sized["param_bytes"]["mean"] <= sized["budget"]
    for family in budget_bench.FAMILIES:  # 1/1024 of 2.3 MB: too small for all
        assert f"{family}@1/1024" in payload["skipped"]
    assert payload["paired_vs_adaptive"]["1/4"]["adaptive@1/4"]["mean"] == 0.0
    assert "adaptive_best_at_1/4" in payload["targets"]
    table = (out / "budget.md").read_text()
    assert "| 1/1024 | adaptive | does not fit: its least state is" in table
    assert (out / "budget.png").read_bytes().startswith(b"\x89PNG")
