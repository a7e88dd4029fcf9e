"""The GPU suite's JSON lines: reading the runs' outputs and summing them up.

Pure functions over text and dicts (standard library only), so that the tests
check them without running anything: `json_lines`, `benchmark_lines` (with
keys/s of lookups), `ctr_lines`, `pytest_counts`, `status_line`, `summary`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

TIMEOUT_CODES = (124, 137)  # timeout(1)'s, and a process killed by SIGKILL
SKIPPED = -1  # the status of a run the budget left no time for
LOOKUP_TARGET = 1e9  # keys/s, at 65,536+ keys a batch, on a GPU
STEP_TARGET = 1.2  # adaptive step against the static one
FLATNESS_TARGET = 1.2  # the step at capacity 2**24 against 2**20


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of `text`, one a line; other lines are left out."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


def benchmark_lines(text: str, batch: int | None = None) -> list[dict[str, Any]]:
    """A benchmark's lines; with `batch`, its lookups get `batch` and their
    keys/s from their medians (unless they say them)."""
    lines = json_lines(text)
    if not batch:
        return lines
    for line in lines:
        if not str(line.get("name", "")).startswith("lookup"):
            continue
        line.setdefault("batch", batch)
        if line.get("median_ms") and "keys_per_s" not in line:
            line["keys_per_s"] = round(batch / line["median_ms"] * 1e3)
        if line.get("baseline_ms") and "baseline_keys_per_s" not in line:
            line["baseline_keys_per_s"] = round(batch / line["baseline_ms"] * 1e3)
    return lines


def ctr_lines(payload: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """examples/s and scores of each variant of the CTR example's ctr.json."""
    lines = []
    for result in payload.get("variants", []):
        line = {"name": "ctr_examples_per_s", "variant": result["variant"]}
        line["examples_per_s"] = round(result["examples_per_s"], 1)
        line["batch_size"] = batch_size
        for key in ("train_examples", "train_seconds", "auc", "log_loss"):
            line[key] = result.get(key)
        lines.append(line)
    return lines


def pytest_counts(text: str) -> tuple[dict[str, Any], list[str]]:
    """pytest's counts (its closing line, or the progress marks of a run cut
    short, then with `incomplete`) and its first failures."""
    closing = [x for x in text.splitlines() if re.search(r"\d+ (passed|failed)", x)]
    if closing:
        counts: dict[str, Any] = {
            what: int(n) for n, what in re.findall(r"(\d+) (\w+)", closing[-1])
        }
    else:
        marks = "".join(re.findall(r"^([.FEsxX]+)\s*\[\s*\d+%\]$", text, re.M))
        counts = {
            "passed": marks.count("."),
            "failed": marks.count("F"),
            "errors": marks.count("E"),
            "skipped": marks.count("s"),
            "incomplete": True,
        }
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    return counts, failures[:20]


def status_line(
    rc: int, seconds: float, timeout_s: int, stderr_tail: str = ""
) -> dict[str, Any]:
    """A run's last line: ok, skipped (the budget spent), timeout or failed."""
    line: dict[str, Any] = {"name": "status", "rc": rc, "seconds": round(seconds, 1)}
    line["timeout_s"] = int(timeout_s)
    if rc == SKIPPED:
        return line | {"status": "skipped", "error": "the budget was spent"}
    if rc == 0:
        return line | {"status": "ok"}
    if rc in TIMEOUT_CODES:
        line |= {"status": "timeout", "error": f"timed out after {timeout_s} s"}
    else:
        line |= {"status": "failed", "error": f"exit status {rc}"}
    return line | {"stderr_tail": stderr_tail}


def tail(text: str, lines: int = 15) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:])[-2000:]


def _find(lines: Iterable[dict], suite: str, name: str) -> dict | None:
    return next(
        (x for x in lines if x.get("suite") == suite and x.get("name") == name), None
    )


def _target(
    name: str,
    found: dict | None,
    key: str,
    bound: float,
    at_conditions: Callable[[dict], bool],
    source: str,
    **more: Any,
) -> dict[str, Any]:
    """One target: the value measured, met or missed (lookups at least the
    bound, ratios at most), and whether it was measured at its conditions."""
    measured = None if found is None else found.get(key)
    at_least = name.startswith("lookup")
    met = None
    if measured is not None:
        met = measured >= bound if at_least else measured <= bound
    return {
        "name": name,
        "value": measured,
        "target": f"{'>=' if at_least else '<='} {bound:g}",
        "met": met,
        "at_target_conditions": bool(found is not None and at_conditions(found)),
        "from": source,
        **more,
    }


def summary(
    lines: list[dict[str, Any]],
    *,
    device: str,
    mode: str,
    ok: bool,
    seconds: float,
    budget_s: int,
) -> dict[str, Any]:
    """The suite's last line: each target, the CTR rates, the tests' counts and
    every run's status."""
    on_gpu = device.startswith("gpu")

    def big_batch(line: dict) -> bool:
        return on_gpu and line.get("batch", 0) >= 65_536

    pipelined = _find(lines, "lookup", "lookup_pipelined")
    per_call = _find(lines, "table", "lookup_hits")
    flat = _find(lines, "step", "adaptive_step_capacity")
    targets = [
        _target(
            "lookup_keys_per_s",
            pipelined,
            "keys_per_s",
            LOOKUP_TARGET,
            big_batch,
            "lookup/lookup_pipelined",
            per_call_keys_per_s=None
            if per_call is None
            else per_call.get("keys_per_s"),
            batch=None if pipelined is None else pipelined.get("batch"),
        ),
        _target(
            "adaptive_step_ratio",
            _find(lines, "step", "adaptive_vs_static_step"),
            "ratio",
            STEP_TARGET,
            big_batch,
            "step/adaptive_vs_static_step",
        ),
        _target(
            "capacity_flatness",
            flat,
            "ratio",
            FLATNESS_TARGET,
            lambda line: (
                on_gpu
                and line.get("baseline_capacity", 2**30) <= 2**20
                and line.get("capacity", 0) >= 2**24
            ),
            "step/adaptive_step_capacity",
            capacities=None
            if flat is None
            else [flat.get("baseline_capacity"), flat.get("capacity")],
        ),
    ]
    tests = _find(lines, "tests", "pytest")
    return {
        "name": "summary",
        "mode": mode,
        "ok": ok,
        "targets": targets,
        "ctr_examples_per_s": {
            x["variant"]: x["examples_per_s"]
            for x in lines
            if x.get("name") == "ctr_examples_per_s"
        },
        "tests": None if tests is None else tests.get("counts"),
        "runs": {
            x["suite"]: x["status"]
            for x in lines
            if x.get("name") == "status" and x["suite"] not in ("setup", "check")
        },
        "seconds": round(seconds, 1),
        "budget_s": int(budget_s),
    }
