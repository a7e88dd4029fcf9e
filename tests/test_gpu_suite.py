"""benchmarks/gpu_suite.sh, run on the CPU (`--quick --cpu`): a test of the
script itself (setup, check, each run under its timeout, the JSON lines, the
summary), not of any speed."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITES = ("table", "lookup", "step", "optim", "ctr", "tests")


def _environment() -> dict[str, str]:
    """This process's environment without what conftest.py and pytest set: the
    suite makes its own XLA flags, compilation caches and test runs."""
    drop = (
        "XLA_FLAGS",
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "ADAPTIVE_JAX_TEST_CACHE_OWNER",
    )
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith("PYTEST")
    }


@pytest.mark.slow  # about 2 minutes on 2 cores
def test_the_quick_cpu_suite_runs_every_benchmark_and_writes_json_lines(tmp_path):
    # Arrange: this interpreter's venv (or this interpreter, outside one), and
    # twice the quick budget: the other tests' worker shares the 2 cores.
    out = tmp_path / "suite.jsonl"
    if sys.prefix != sys.base_prefix:
        python = ["--venv", sys.prefix]
    else:
        python = ["--python", sys.executable]
    command = ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--quick", "--cpu"]
    command += ["--out", str(out), "--budget", "360", *python]

    # Act
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )

    # Assert: every run finished, each wrote its lines, the summary came last.
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    assert lines and all({"suite", "device", "name"} <= set(x) for x in lines)
    assert {x["device"] for x in lines[1:]} == {"cpu:cpu"}
    assert not [x for x in lines if "error" in x]
    by = {(x["suite"], x["name"]): x for x in lines}
    for suite in ("check", *SUITES):
        assert by[suite, "status"]["status"] == "ok", suite
    assert by["check", "devices"]["platform"] == "cpu"
    for name in ("lookup_hits", "lookup_10pct_misses", "lookup_or_insert_5pct_new"):
        assert by["table", name]["keys_per_s"] > 0
        assert by["table", name]["ratio"] > 0
    assert by["lookup", "lookup_pipelined"]["keys_per_s"] > 0
    assert by["step", "adaptive_vs_static_step"]["ratio"] > 0
    assert by["step", "adaptive_step_capacity"]["ratio"] > 0
    assert by["optim", "sparse_ftrl_vs_dense_rows"]["ratio"] > 0
    assert by["optim", "sparse_ftrl_vs_dense_table"]["ratio"] > 0
    assert by["ctr", "ctr_examples_per_s"]["examples_per_s"] > 0
    counts = by["tests", "pytest"]["counts"]
    assert counts["passed"] > 0 and not counts.get("failed"), counts
    summary = lines[-1]
    assert summary["suite"] == "summary" and summary["ok"] is True
    assert summary["runs"] == dict.fromkeys(SUITES, "ok")
    targets = {t["name"]: t for t in summary["targets"]}
    assert set(targets) == {
        "lookup_keys_per_s",
        "adaptive_step_ratio",
        "capacity_flatness",
    }
    for target in targets.values():
        assert target["value"] is not None and isinstance(target["met"], bool)
        assert target["at_target_conditions"] is False  # a CPU, small sizes
    assert summary["ctr_examples_per_s"]["adaptive"] > 0
