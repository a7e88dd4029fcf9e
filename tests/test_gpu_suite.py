"""benchmarks/gpu_suite.py: its logic (options, sizes, budget, the JSON lines
and the summary) imported and tested here; and the whole suite run on the CPU
(`--quick --cpu`, slow): setup, check, each run under its timeout, the lines,
the summary; a test of the driver, not of any speed."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _suite_lines as lines_lib  # noqa: E402
import gpu_suite  # noqa: E402

SUITES = ("table", "lookup", "step", "optim", "ctr", "tests")


# Options and sizes.


def test_the_defaults_are_the_full_gpu_run():
    options = gpu_suite.parse([])
    assert (options.quick, options.cpu, options.budget) == (False, False, 480)
    assert options.venv == pathlib.Path(".venv-gpu")
    assert options.out == ROOT / "build" / "gpu_suite.jsonl"


def test_quick_cpu_runs_in_the_test_venv_with_small_sizes():
    options = gpu_suite.parse(["--quick", "--cpu"])
    assert options.budget == 180 and options.venv == pathlib.Path(".venv")
    plan = gpu_suite.plan(options)
    assert plan.table_batch == 4096 and plan.tests == ("tests/test_optim.py",)
    assert plan.workers == 0


def test_quick_on_a_gpu_keeps_the_lookup_targets_batch():
    plan = gpu_suite.plan(gpu_suite.parse(["--quick"]))
    assert plan.table_batch == 65536 and plan.workers == 4
    assert plan.tests == ("tests/test_table.py", "tests/test_optim.py")


def test_a_relative_out_is_from_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gpu_suite.parse(["--out", "x/s.jsonl"]).out == tmp_path / "x/s.jsonl"


@pytest.mark.parametrize(
    "argv",
    [["--cuda", "11"], ["--budget", "0"], ["--budget", "ten"], ["--nope"]],
    ids=["cuda_11", "budget_0", "budget_not_a_number", "unknown_option"],
)
def test_a_bad_option_exits_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_suite.parse(argv)
    assert exit_info.value.code == 2
    assert "gpu_suite.py" in capsys.readouterr().err


def test_help_describes_every_run():
    text = gpu_suite.parser().format_help()
    for suite in SUITES:
        assert f"  {suite} " in text


@pytest.mark.parametrize(
    ("smi", "cuda"),
    [("| CUDA Version: 12.8 |", "12"), ("CUDA Version: 13.0", "13")],
)
def test_the_plugin_follows_the_drivers_cuda(smi, cuda):
    assert gpu_suite.cuda_of_driver(smi) == cuda


@pytest.mark.parametrize("smi", ["CUDA Version: 11.8", "No devices were found"])
def test_a_driver_without_cuda_12_fails_setup(smi):
    with pytest.raises(gpu_suite.SetupError, match="CUDA"):
        gpu_suite.cuda_of_driver(smi)


# The budget.


def test_each_run_gets_its_share_scaled_to_the_budget_or_what_is_left():
    budget = gpu_suite.Budget(total=960, mode="full", deadline=1000.0)
    assert budget.timeout_for("step", now=0.0) == 220  # 110 of 480, doubled
    assert budget.timeout_for("tests", now=0.0) == 995  # the rest, 5 s kept
    assert budget.timeout_for("step", now=900.0) == 95  # what is left


def test_a_run_past_its_timeout_is_killed_with_status_124():
    done = gpu_suite.run(
        [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(30)"],
        5,
        dict(os.environ),
    )
    assert done.rc == 124 and done.stdout == "hi\n" and done.seconds < 20


def test_a_run_with_under_5_seconds_left_is_skipped():
    done = gpu_suite.run(["false"], 4, dict(os.environ))
    assert done.rc == lines_lib.SKIPPED and done.seconds == 0.0


# The lines.


def test_json_lines_keep_objects_only():
    text = 'noise\n{"name": "a", "x": 1}\n[1, 2]\n{bad json\n  {"name": "b"}  \n'
    assert lines_lib.json_lines(text) == [{"name": "a", "x": 1}, {"name": "b"}]


def test_lookup_lines_get_keys_per_s_from_their_batch():
    text = "\n".join(
        json.dumps(x)
        for x in (
            {"name": "lookup_hits", "median_ms": 0.5, "baseline_ms": 0.25},
            {"name": "lookup_own", "median_ms": 1.0, "keys_per_s": 7},
            {"name": "insert", "median_ms": 2.0},
        )
    )
    hits, own, insert = lines_lib.benchmark_lines(text, batch=1000)
    assert hits["batch"] == 1000
    assert (hits["keys_per_s"], hits["baseline_keys_per_s"]) == (2_000_000, 4_000_000)
    assert own["keys_per_s"] == 7  # a benchmark's own figure stays
    assert "keys_per_s" not in insert and "batch" not in insert


def test_ctr_lines_give_each_variants_rate_and_scores():
    payload = {
        "variants": [
            {"variant": "adaptive", "examples_per_s": 1234.567, "auc": 0.7},
            {"variant": "static", "examples_per_s": 99.0, "train_seconds": 2.0},
        ]
    }
    adaptive, static = lines_lib.ctr_lines(payload, 1024)
    assert adaptive["examples_per_s"] == 1234.6 and adaptive["auc"] == 0.7
    assert adaptive["log_loss"] is None and static["train_seconds"] == 2.0
    assert {adaptive["batch_size"], static["batch_size"]} == {1024}


def test_pytest_counts_from_the_closing_line_and_its_failures():
    text = (
        "..F.\nFAILED tests/test_a.py::test_x - boom\n"
        "ERROR tests/test_b.py\n2 failed, 10 passed, 1 skipped in 3.2s\n"
    )
    counts, failures = lines_lib.pytest_counts(text)
    assert counts == {"failed": 2, "passed": 10, "skipped": 1}
    assert failures == ["tests/test_a.py::test_x", "tests/test_b.py"]


def test_pytest_counts_of_a_run_cut_short_come_from_its_marks():
    counts, _ = lines_lib.pytest_counts("..s.F [ 40%]\n..E. [ 80%]\n")
    assert counts == {
        "passed": 6,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
        "incomplete": True,
    }


@pytest.mark.parametrize(
    ("rc", "status"),
    [(0, "ok"), (-1, "skipped"), (124, "timeout"), (137, "timeout"), (2, "failed")],
)
def test_a_runs_status_line(rc, status):
    line = lines_lib.status_line(rc, 3.14159, 60, "the tail")
    assert line["status"] == status and line["seconds"] == 3.1
    assert ("error" in line) == (rc != 0)
    assert ("stderr_tail" in line) == (rc not in (0, -1))


def suite_lines(device: str, batch: int, capacities: tuple[int, int]) -> list[dict]:
    return [
        {"suite": "check", "name": "status", "status": "ok"},
        {"suite": "table", "name": "lookup_hits", "keys_per_s": 5e8},
        {"suite": "lookup", "name": "lookup_pipelined", "keys_per_s": 2e9,
         "batch": batch},
        {"suite": "step", "name": "adaptive_vs_static_step", "ratio": 1.3,
         "batch": batch},
        {
            "suite": "step",
            "name": "adaptive_step_capacity",
            "ratio": 1.1,
            "baseline_capacity": capacities[0],
            "capacity": capacities[1],
        },
        {"suite": "ctr", "name": "ctr_examples_per_s", "variant": "adaptive",
         "examples_per_s": 50.0},
        {"suite": "tests", "name": "pytest", "counts": {"passed": 3}},
        {"suite": "ctr", "name": "status", "status": "timeout"},
    ]  # fmt: skip


def test_the_summary_says_each_target_met_or_missed_at_its_conditions():
    lines = suite_lines("gpu:H200", 65536, (2**20, 2**24))
    summary = lines_lib.summary(
        lines, device="gpu:H200", mode="full", ok=False, seconds=12.34, budget_s=480
    )
    targets = {t["name"]: t for t in summary["targets"]}
    assert targets["lookup_keys_per_s"]["met"] is True  # 2e9 >= 1e9
    assert targets["lookup_keys_per_s"]["per_call_keys_per_s"] == 5e8
    assert targets["adaptive_step_ratio"]["met"] is False  # 1.3 > 1.2
    assert targets["capacity_flatness"]["met"] is True
    assert targets["capacity_flatness"]["capacities"] == [2**20, 2**24]
    assert all(t["at_target_conditions"] for t in targets.values())
    assert summary["ctr_examples_per_s"] == {"adaptive": 50.0}
    assert summary["tests"] == {"passed": 3}
    assert summary["runs"] == {"ctr": "timeout"} and summary["seconds"] == 12.3


def test_small_sizes_or_a_cpu_are_not_the_targets_conditions():
    for device, batch, capacities in (
        ("cpu:cpu", 65536, (2**20, 2**24)),
        ("gpu:H200", 4096, (2**18, 2**20)),
    ):
        summary = lines_lib.summary(
            suite_lines(device, batch, capacities),
            device=device,
            mode="quick",
            ok=True,
            seconds=1.0,
            budget_s=180,
        )
        assert not any(t["at_target_conditions"] for t in summary["targets"])


def test_a_target_not_measured_is_neither_met_nor_missed():
    summary = lines_lib.summary(
        [], device="gpu:H200", mode="full", ok=False, seconds=0.0, budget_s=480
    )
    for target in summary["targets"]:
        assert (target["value"], target["met"]) == (None, None)
        assert target["at_target_conditions"] is False


# The whole suite, on the CPU.


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
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py")]
    command += ["--quick", "--cpu", "--out", str(out), "--budget", "360", *python]

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
