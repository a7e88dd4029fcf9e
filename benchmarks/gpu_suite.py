"""The GPU benchmark suite: set up, check that JAX sees the GPU, then run the
benchmarks and the fast tests on it within a time budget, JSON lines into one
file.

Run: python benchmarks/gpu_suite.py [--quick] [--cpu] [--out FILE] [options]
     (or `make bench-gpu`, `make bench-gpu BENCH_GPU_ARGS=--quick`)

1. setup: the venv .venv-gpu (.venv with --cpu; --venv DIR for another) is
   reused if it exists, else made as the Makefile makes it (pip install -c
   constraints.txt -e '.[dev,examples,grain]'). On a GPU machine the CUDA
   plugin of the installed jax's version goes into it: pip install
   "jax[cudaN]==<jax version>", N from the driver's CUDA version (nvidia-smi;
   --cuda N to choose), unless that plugin is there already. Needs pip to
   reach PyPI. --python PY instead uses the interpreter PY as it is, with no
   venv and no installs (a machine without network whose Python has a GPU jax
   already), adaptive_jax from this tree. Setup is not counted in the budget.
2. check: `jax.devices()`; unless the platform is gpu (cpu with --cpu), a JSON
   line with "error" and exit status 1.
3. the runs, each under a timeout, within 8 minutes in all (--quick: 3;
   --budget SECONDS to change it, each run's share scaled with it):
     table   benchmarks/table_bench.py: lookup (all hits, 10% misses),
             lookup_or_insert, each against `jnp.take` of the same rows; keys/s
     lookup  gpu_step_bench.py --part lookup: lookups issued back to back
             (throughput) against `jnp.take` issued the same way; keys/s
     step    gpu_step_bench.py --part step: the adaptive train step against a
             static `jnp.take` + dense-gradient + optax step of the same
             batch; the step at capacity 2**24 against 2**20 (quick: 2**20
             against 2**18)
     optim   gpu_step_bench.py --part optim: sparse FTRL against the dense
             optax update of the same rows, and of the whole table
     ctr     python -m adaptive_jax.examples.ctr on synthetic data:
             examples/s per variant
     tests   pytest -m "not slow" -x on the device (--quick: test_table.py and
             test_optim.py; with --cpu --quick test_optim.py). On a GPU,
             tests/test_sharding.py and the doctest of parallel/sharding.py
             are left out (they need 8 devices, which XLA makes on the CPU
             only), and XLA_FLAGS is set so that conftest.py's -O0, meant for
             XLA:CPU's compile times, does not reach the GPU's kernels.
   A run that times out or fails writes a JSON line saying so, and the suite
   goes on.
4. summary: one JSON line with each target measured and met or missed (lookup
   >= 1e9 keys/s at 65,536+ keys a batch; adaptive step <= 1.2x the static
   step; step at capacity 2**24 <= 1.2x the step at 2**20), and whether the
   run's sizes and device are the target's conditions.

Every line is a JSON object with "suite" and "device"; the lines are also
printed. Exit status: 0 when every run finished; 3 when one failed or timed
out; 1 when setup or the check failed; 2 for a bad option.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import _suite_lines as lines_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = "-e .[dev,examples,grain]"
CTR_BATCH = 1024
# Each run's share of the default budget (seconds); the tests get the rest.
SHARES = {
    "quick": {
        "check": 15,
        "table": 20,
        "lookup": 15,
        "step": 45,
        "optim": 15,
        "ctr": 50,
    },
    "full": {
        "check": 30,
        "table": 45,
        "lookup": 30,
        "step": 110,
        "optim": 30,
        "ctr": 90,
    },
}
DEFAULT_BUDGET = {"quick": 180, "full": 480}
PLUGIN_PACKAGES = (
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "jax-cuda12-pjrt",
    "jax-cuda13-pjrt",
)
CHECK_CODE = """
import importlib.metadata as md, json, sys
import jax, jaxlib
import adaptive_jax
devices = jax.devices()
plugins = {}
for name in PLUGINS:
    try:
        plugins[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps({
    "name": "devices", "platform": devices[0].platform,
    "device_kind": devices[0].device_kind, "count": len(devices),
    "devices": [str(d) for d in devices], "jax": jax.__version__,
    "jaxlib": jaxlib.__version__, "plugins": plugins,
    "python": sys.version.split()[0], "adaptive_jax": adaptive_jax.__file__,
}))
""".replace("PLUGINS", repr(PLUGIN_PACKAGES))


class SetupError(Exception):
    """Setup or the check failed: the suite writes the error and exits 1."""

    def __init__(self, suite: str, message: str):
        super().__init__(message)
        self.suite = suite


# The options and what they imply.


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu_suite.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument("--quick", action="store_true", help="3 minutes, smaller sizes")
    p.add_argument("--cpu", action="store_true", help="on the CPU, no plugin")
    p.add_argument("--out", type=pathlib.Path, help="the JSON lines (emptied first)")
    p.add_argument("--python", help="no venv and no installs: this interpreter")
    p.add_argument("--venv", type=pathlib.Path, help="the venv to reuse or make")
    p.add_argument("--cuda", choices=("12", "13"), help="the plugin's CUDA")
    p.add_argument("--budget", type=int, help="seconds for the check and the runs")
    return p


@dataclasses.dataclass(frozen=True)
class Options:
    """The parsed options, with their defaults filled in."""

    quick: bool
    cpu: bool
    out: pathlib.Path
    python: str | None
    venv: pathlib.Path
    cuda: str | None
    budget: int

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


def parse(argv: Sequence[str] | None = None) -> Options:
    """The options of `argv`; argparse exits with status 2 on a bad one."""
    p = parser()
    args = p.parse_args(argv)
    if args.budget is not None and args.budget < 1:
        p.error("--budget must be whole seconds >= 1")
    mode = "quick" if args.quick else "full"
    venv = args.venv or pathlib.Path(".venv" if args.cpu else ".venv-gpu")
    out = (args.out or ROOT / "build" / "gpu_suite.jsonl").absolute()  # from here
    return Options(
        args.quick,
        args.cpu,
        out,
        args.python,
        venv,
        args.cuda,
        args.budget or DEFAULT_BUDGET[mode],
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """The runs' sizes: the benchmarks' own (full), their --quick ones
    (--quick; --cpu alone), and small ones for a CPU (--cpu --quick: a test of
    the suite). The lookup targets' batch is 65,536 keys in both GPU modes."""

    table_args: tuple[str, ...]
    table_batch: int
    step_args: tuple[str, ...]
    ctr_args: tuple[str, ...]
    tests: tuple[str, ...]
    workers: int


def plan(options: Options) -> Plan:
    if options.cpu and options.quick:
        return Plan(
            ("--quick", "--capacity", "65536", "--live", "32768", "--raw-ids",
             "262144", "--batch", "4096"),
            4096,
            ("--quick", "--batch", "2048", "--raw-ids", "262144", "--buckets", "16384",
             "--capacity", "32768", "--frequent", "16384", "--capacity-small", "16384",
             "--capacity-large", "65536", "--rows", "16384", "--table-capacity",
             "32768", "--table-live", "16384", "--batches", "4", "--runs", "5",
             "--warmup", "2"),
            ("--variants", "adaptive", "--num-train", "8192", "--num-test", "2048"),
            ("tests/test_optim.py",),
            0,
        )  # fmt: skip
    if options.quick or options.cpu:
        return Plan(
            ("--quick", "--capacity", "1048576", "--live", "524288", "--raw-ids",
             "4000000", "--batch", "65536"),
            65536,
            ("--quick", "--batch", "65536"),
            ("--variants", "adaptive", "--num-train", "50000", "--num-test", "10000"),
            ("tests/test_table.py", "tests/test_optim.py") if options.quick else (),
            2 if options.cpu else 4,
        )  # fmt: skip
    return Plan(
        ("--batch", "65536"),
        65536,
        (),
        ("--variants", "static", "adaptive", "--num-train", "200000", "--num-test",
         "50000"),
        (),
        4,
    )  # fmt: skip


@dataclasses.dataclass
class Budget:
    """Seconds left for the runs: each run its share of the default budget,
    scaled to the one given, or what is left, whichever is less."""

    total: int
    mode: str
    deadline: float

    def timeout_for(self, suite: str, now: float | None = None) -> int:
        left = int(self.deadline - (time.monotonic() if now is None else now)) - 5
        share = SHARES[self.mode].get(suite)
        if share is None:
            return left
        return min(share * self.total // DEFAULT_BUDGET[self.mode], left)


# Running things.


@dataclasses.dataclass(frozen=True)
class Run:
    """What a run left: its exit status (-1: skipped), time and output."""

    rc: int
    seconds: float
    timeout_s: int
    stdout: str
    stderr: str


def run(command: Sequence[str], timeout_s: int, env: dict[str, str]) -> Run:
    """`command` from the repository's root, killed with its children after
    `timeout_s` (then rc 124, as timeout(1)'s); skipped under 5 seconds."""
    if timeout_s < 5:
        return Run(lines_lib.SKIPPED, 0.0, timeout_s, "", "")
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        try:
            rc = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = 124
        out.seek(0)
        err.seek(0)
        return Run(rc, time.monotonic() - start, timeout_s, out.read(), err.read())


class Suite:
    """The JSON lines of one suite run, into `out` and printed."""

    def __init__(self, out: pathlib.Path):
        self.out = out
        self.device = "unknown"
        self.ok = True
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")

    def emit(self, suite: str, fields: dict[str, Any]) -> None:
        text = json.dumps({"suite": suite, "device": self.device, **fields})
        with self.out.open("a") as f:
            f.write(text + "\n")
        print(text, flush=True)

    def status(self, suite: str, result: Run, error_text: str | None = None) -> None:
        if result.rc != 0:
            self.ok = False
        tail = lines_lib.tail(result.stderr if error_text is None else error_text)
        self.emit(
            suite,
            lines_lib.status_line(result.rc, result.seconds, result.timeout_s, tail),
        )

    def lines(self) -> list[dict[str, Any]]:
        return lines_lib.json_lines(self.out.read_text())


def _capture(command: Sequence[str], env: dict[str, str], timeout_s: int = 1800) -> str:
    done = subprocess.run(
        list(command), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError((done.stdout + done.stderr)[-1500:])
    return done.stdout.strip()


def setup(options: Options, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The suite's Python, and the setup line's fields.

    Raises:
      SetupError: the venv, jax or the plugin could not be had.
    """
    start = time.monotonic()
    venv = ROOT / options.venv
    if options.python:
        python, how = options.python, "none: --python used as it is"
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), env.get("PYTHONPATH")])
        )
    elif (venv / "bin" / "python").exists():
        python, how = str(venv / "bin" / "python"), f"{options.venv} reused"
    else:
        base = env.get("PYTHON") or shutil.which("python3.11") or sys.executable
        try:
            _capture([base, "-m", "venv", str(venv)], env)
            python = str(venv / "bin" / "python")
            _capture([python, "-m", "pip", "install", "--quiet",
                      "--disable-pip-version-check", "-c", "constraints.txt",
                      *INSTALL.split()], env)  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise SetupError(
                "setup", f"could not make {options.venv}: {error}"
            ) from error
        if options.venv == pathlib.Path(".venv"):
            (venv / ".installed").touch()  # the Makefile's stamp
        how = f"{options.venv} made"
    try:
        jax_version = _capture(
            [python, "-c", "import jax; print(jax.__version__)"], env
        )
    except (RuntimeError, OSError) as error:
        raise SetupError("setup", f"{python} cannot import jax: {error}") from error
    plugin = _plugin(options, python, jax_version, env)
    fields = {"name": "setup", "python": python, "venv": how, "jax": jax_version}
    fields |= {"plugin": plugin, "seconds": round(time.monotonic() - start, 1)}
    return python, fields


def cuda_of_driver(nvidia_smi_output: str) -> str:
    """The plugin's CUDA (12 or 13) for the driver that printed this.

    Raises:
      SetupError: no CUDA version in it, or one below 12.
    """
    found = re.search(r"CUDA Version: (\d+)", nvidia_smi_output)
    if found is None:
        head = "\n".join(nvidia_smi_output.splitlines()[:3])
        raise SetupError("setup", f"nvidia-smi names no CUDA version: {head}")
    version = int(found.group(1))
    if version < 12:
        raise SetupError(
            "setup", f"the driver supports CUDA {version}; jax's plugins need 12 or 13"
        )
    return "13" if version >= 13 else "12"


def _plugin(options: Options, python: str, jax_version: str, env: dict) -> str:
    if options.cpu:
        return "none (--cpu)"
    if options.python:
        return "as installed (--python)"
    for n in (options.cuda,) if options.cuda else ("13", "12"):
        code = f"import importlib.metadata as m; print(m.version('jax-cuda{n}-plugin'))"
        try:
            if _capture([python, "-c", code], env) == jax_version:
                return f"jax-cuda{n}-plugin {jax_version} (there already)"
        except RuntimeError:
            pass
    cuda = options.cuda
    if cuda is None:
        if shutil.which("nvidia-smi") is None:
            raise SetupError(
                "setup",
                "no NVIDIA driver here (nvidia-smi not found); --cpu runs on the CPU",
            )
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
        cuda = cuda_of_driver(smi.stdout + smi.stderr)
    try:
        _capture([python, "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", "-c", "constraints.txt",
                  f"jax[cuda{cuda}]=={jax_version}"], env)  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        raise SetupError(
            "setup",
            f"pip could not install jax[cuda{cuda}]=={jax_version} (it needs PyPI; "
            f"--python PY runs a Python that has a GPU jax as it is): {error}",
        ) from error
    return f"jax-cuda{cuda}-plugin {jax_version} (installed)"


def check(suite: Suite, options: Options, python: str, budget: Budget, env) -> None:
    """The devices line; the suite's device from it.

    Raises:
      SetupError: the check failed, or the platform is not the one wanted.
    """
    result = run([python, "-c", CHECK_CODE], budget.timeout_for("check"), env)
    found = lines_lib.json_lines(result.stdout)
    if result.rc != 0 or not found:
        raise SetupError(
            "check",
            f"the check failed (exit status {result.rc}): "
            + lines_lib.tail(result.stderr, 5),
        )
    devices = found[0]
    suite.device = f"{devices['platform']}:{devices['device_kind']}"
    suite.emit("check", devices)
    suite.status("check", result)
    want = "cpu" if options.cpu else "gpu"
    if devices["platform"] != want:
        raise SetupError(
            "check",
            f"JAX's platform is {devices['platform']}, not {want}: "
            f"{result.stdout[:400]}",
        )


def benchmarks(suite: Suite, python: str, the_plan: Plan, budget: Budget, env) -> None:
    """The table, lookup, step and optim runs, their lines tagged."""
    result = run(
        [python, "benchmarks/table_bench.py", *the_plan.table_args],
        budget.timeout_for("table"),
        env,
    )
    for line in lines_lib.benchmark_lines(result.stdout, the_plan.table_batch):
        suite.emit("table", line)
    suite.status("table", result)
    for part in ("lookup", "step", "optim"):
        command = [python, "benchmarks/gpu_step_bench.py", "--part", part]
        result = run([*command, *the_plan.step_args], budget.timeout_for(part), env)
        for line in lines_lib.benchmark_lines(result.stdout):
            suite.emit(part, line)
        suite.status(part, result)


def ctr(suite: Suite, python: str, the_plan: Plan, budget: Budget, env) -> None:
    """The CTR example on synthetic data: examples/s of each variant."""
    with tempfile.TemporaryDirectory(prefix="gpu_suite_ctr") as work:
        json_path = pathlib.Path(work) / "ctr" / "ctr.json"
        command = [python, "-m", "adaptive_jax.examples.ctr", *the_plan.ctr_args,
                   "--batch-size", str(CTR_BATCH), "--sweep", "--no-plot",
                   "--no-progress", "--data-dir", f"{work}/ctr_data", "--output-dir",
                   f"{work}/ctr", "--json", str(json_path)]  # fmt: skip
        result = run(command, budget.timeout_for("ctr"), env)
        error_text = None
        if result.rc == 0:
            try:
                payload = json.loads(json_path.read_text())
            except (OSError, ValueError) as error:
                result = dataclasses.replace(result, rc=1)
                error_text = f"{result.stderr}no ctr.json: {error}\n"
            else:
                for line in lines_lib.ctr_lines(payload, CTR_BATCH):
                    suite.emit("ctr", line)
        suite.status("ctr", result, error_text)


def tests(suite: Suite, options: Options, python: str, the_plan: Plan, budget, env):
    """The fast tests on the device. On a GPU: no 8-device tests, no -O0."""
    test_env = dict(env)
    args = ["-m", "not slow", "-q", "-x", "-p", "no:cacheprovider"]
    if the_plan.workers:
        args += ["-n", str(the_plan.workers)]
    if not options.cpu:
        test_env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        test_env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        args += [
            "--ignore=tests/test_sharding.py",
            "--ignore=adaptive_jax/parallel/sharding.py",
        ]
    result = run(
        [python, "-m", "pytest", *args, *the_plan.tests],
        budget.timeout_for("tests"),
        test_env,
    )
    if result.rc != lines_lib.SKIPPED:
        counts, failures = lines_lib.pytest_counts(result.stdout)
        fields = {"name": "pytest", "counts": counts, "failures": failures}
        fields |= {
            "paths": " ".join(the_plan.tests) or "all",
            "workers": the_plan.workers,
        }
        suite.emit("tests", fields)
    # pytest's exit status 1 is failed tests: its output says which.
    suite.status("tests", result, result.stdout if result.rc == 1 else None)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    suite = Suite(options.out)
    start = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if options.cpu:
        env["JAX_PLATFORMS"] = "cpu"
    budget = Budget(options.budget, options.mode, 0.0)
    try:
        python, fields = setup(options, env)
        suite.emit("setup", fields)
        budget.deadline = time.monotonic() + options.budget
        check(suite, options, python, budget, env)
        the_plan = plan(options)
        benchmarks(suite, python, the_plan, budget, env)
        ctr(suite, python, the_plan, budget, env)
        tests(suite, options, python, the_plan, budget, env)
        status = 0 if suite.ok else 3
    except SetupError as error:
        suite.ok = False
        suite.emit(error.suite, {"name": "error", "error": str(error)})
        status = 1
    suite.emit(
        "summary",
        lines_lib.summary(
            suite.lines(),
            device=suite.device,
            mode=options.mode,
            ok=suite.ok,
            seconds=time.monotonic() - start,
            budget_s=options.budget,
        ),
    )
    print(f"gpu_suite.py: JSON lines in {options.out}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
