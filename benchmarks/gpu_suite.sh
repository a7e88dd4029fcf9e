#!/usr/bin/env bash
# The GPU benchmark suite: set up, check that JAX sees the GPU, then run the
# benchmarks and the fast tests on it within a time budget, JSON lines into one
# file.
#
# Run: bash benchmarks/gpu_suite.sh [--quick] [--cpu] [--out FILE] [options]
#      (or `make bench-gpu`, `make bench-gpu BENCH_GPU_ARGS=--quick`)
#
# 1. setup: the venv .venv-gpu (.venv with --cpu; --venv DIR for another) is
#    reused if it exists, else
#    made as the Makefile makes it (pip install -c constraints.txt
#    -e '.[dev,examples]'). On a GPU machine the CUDA plugin of the installed
#    jax's version goes into it: pip install "jax[cudaN]==<jax version>", N from
#    the driver's CUDA version (nvidia-smi; --cuda N to choose), unless that
#    plugin is there already. Needs pip to reach PyPI. --python PY instead uses
#    the interpreter PY as it is, with no venv and no installs (a machine
#    without network whose Python has a GPU jax already), adaptive_jax from
#    this tree. Setup is not counted in the budget.
# 2. check: `jax.devices()`; unless the platform is gpu (cpu with --cpu), a JSON
#    line with "error" and exit status 1.
# 3. the runs, each under `timeout`, within 8 minutes in all (--quick: 3;
#    --budget SECONDS to change it, each run's share scaled with it):
#      table   benchmarks/table_bench.py: lookup (all hits, 10% misses),
#              lookup_or_insert, each against `jnp.take` of the same rows; keys/s
#      lookup  gpu_step_bench.py --part lookup: lookups issued back to back
#              (throughput) against `jnp.take` issued the same way; keys/s
#      step    gpu_step_bench.py --part step: the adaptive train step against a
#              static `jnp.take` + dense-gradient + optax step of the same
#              batch; the step at capacity 2**24 against 2**20 (quick: 2**20
#              against 2**18)
#      optim   gpu_step_bench.py --part optim: sparse FTRL against the dense
#              optax update of the same rows, and of the whole table
#      ctr     python -m adaptive_jax.examples.ctr on synthetic data:
#              examples/s per variant
#      tests   pytest -m "not slow" -x on the device (--quick: test_table.py and
#              test_optim.py; with --cpu --quick test_optim.py). On a GPU,
#              tests/test_sharding.py and the doctest of parallel/sharding.py
#              are left out (they need 8 devices, which XLA makes on the CPU
#              only), and XLA_FLAGS is set so that conftest.py's -O0, meant
#              for XLA:CPU's compile times, does not reach the GPU's kernels.
#    A run that times out or fails writes a JSON line saying so, and the suite
#    goes on.
# 4. summary: one JSON line with each target measured and met or missed (lookup
#    >= 1e9 keys/s at 65,536+ keys a batch; adaptive step <= 1.2x the static
#    step; step at capacity 2**24 <= 1.2x the step at 2**20), and whether the
#    run's sizes and device are the target's conditions.
#
# Every line is a JSON object with "suite" and "device"; the lines are also
# printed.
#
# Options:
#   --quick         3 minutes, smaller sizes (the lookups still 65,536 keys a batch)
#   --out FILE      the JSON lines (default: build/gpu_suite.jsonl), emptied first
#   --cpu           on the CPU, no plugin, at the --quick sizes; with --quick at
#                   small ones: a test of this script (tests/test_gpu_suite.py)
#   --venv DIR      the venv to reuse or make (default: .venv-gpu, so that the
#                   plugin never lands in the .venv that make test uses; with
#                   --cpu: .venv)
#   --python PY     no venv and no installs: PY as it is
#   --cuda 12|13    the plugin's CUDA (default: from the driver)
#   --budget S      seconds for the check and the runs (default: 480; quick: 180)
#
# Exit status: 0 when every run finished; 3 when one failed or timed out; 1
# when setup or the check failed; 2 for a bad option.

set -uo pipefail

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

QUICK=0
CPU=0
OUT_FILE=""
PY_GIVEN=""
VENV=""
CUDA=""
BUDGET=""
while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --cpu) CPU=1 ;;
    --out) OUT_FILE="${2:?--out needs a file}" && shift ;;
    --python) PY_GIVEN="${2:?--python needs an interpreter}" && shift ;;
    --venv) VENV="${2:?--venv needs a directory}" && shift ;;
    --cuda) CUDA="${2:?--cuda needs 12 or 13}" && shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}" && shift ;;
    -h | --help) usage && exit 0 ;;
    *) echo "gpu_suite.sh: unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done
if [[ -z $VENV ]]; then
    VENV=$([[ $CPU == 1 ]] && echo .venv || echo .venv-gpu)
fi
if [[ -n $CUDA && $CUDA != 12 && $CUDA != 13 ]]; then
    echo "gpu_suite.sh: --cuda must be 12 or 13" >&2
    exit 2
fi
if [[ -n $BUDGET && ! $BUDGET =~ ^[0-9]+$ ]]; then
    echo "gpu_suite.sh: --budget must be whole seconds" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_FILE="${OUT_FILE:-$ROOT/build/gpu_suite.jsonl}" # a relative one: from here
mkdir -p "$(dirname "$OUT_FILE")" || exit 1
OUT_FILE="$(cd "$(dirname "$OUT_FILE")" && pwd)/$(basename "$OUT_FILE")"
: >"$OUT_FILE" || exit 1
cd "$ROOT" || exit 1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX")" || exit 1
trap 'rm -rf "$WORK"' EXIT

MODE=$([[ $QUICK == 1 ]] && echo quick || echo full)
DEFAULT_BUDGET=$([[ $QUICK == 1 ]] && echo 180 || echo 480)
BUDGET="${BUDGET:-$DEFAULT_BUDGET}"
export PYTHONUNBUFFERED=1
export SUITE_OUT="$OUT_FILE" SUITE_DEVICE="unknown" SUITE_MODE="$MODE"
if ((CPU)); then
    export JAX_PLATFORMS=cpu
fi

# The JSON lines are written by this helper (standard library only), with any
# Python at hand: the system's until the suite's own is known.
cat >"$WORK/suite_json.py" <<'PYEOF'
"""JSON lines for gpu_suite.sh: `line`, `collect`, `ctr`, `tests`, `summary`."""

import json
import os
import re
import sys

OUT = os.environ["SUITE_OUT"]


def emit(suite, fields):
    line = {"suite": suite, "device": os.environ.get("SUITE_DEVICE", "unknown")}
    line.update(fields)
    text = json.dumps(line)
    with open(OUT, "a") as out:
        out.write(text + "\n")
    print(text, flush=True)


def value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(args):
    """`key=text` (a string) and `key:=json` (a number, null, ...)."""
    out = {}
    for arg in args:
        key, text = arg.split("=", 1)
        if key.endswith(":"):
            out[key[:-1]] = value(text)
        else:
            out[key] = text
    return out


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])[-2000:]
    except OSError:
        return ""


def status(suite, rc, seconds, timeout_s, err_path, extra=None):
    """The run's last line: ok, skipped (rc -1), timeout (rc 124 or 137) or
    failed."""
    rc = int(rc)
    fields = {"name": "status", "rc": rc, "seconds": round(float(seconds), 1)}
    fields["timeout_s"] = int(timeout_s)
    if rc == -1:
        fields["status"] = "skipped"
        fields["error"] = "the budget was spent"
        emit(suite, fields)
        return
    if rc == 0:
        fields["status"] = "ok"
    elif rc in (124, 137):
        fields["status"] = "timeout"
        fields["error"] = f"timed out after {timeout_s} s"
    else:
        fields["status"] = "failed"
        fields["error"] = f"exit status {rc}"
    if rc != 0:
        fields["stderr_tail"] = tail(err_path)
    fields.update(extra or {})
    emit(suite, fields)


def json_lines(path):
    out = []
    try:
        with open(path, errors="replace") as f:
            for raw in f:
                raw = raw.strip()
                if raw.startswith("{"):
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(line, dict):
                        out.append(line)
    except OSError:
        pass
    return out


def collect(suite, out_path, err_path, rc, seconds, timeout_s, *extra):
    """The benchmark's JSON lines, tagged; with `batch=N`, keys/s of lookups."""
    extra = pairs(extra)
    batch = extra.get("batch")
    for line in json_lines(out_path):
        if batch and line.get("name", "").startswith("lookup"):
            line.setdefault("batch", batch)
            if line.get("median_ms") and "keys_per_s" not in line:
                line["keys_per_s"] = round(batch / line["median_ms"] * 1e3)
            if line.get("baseline_ms") and "baseline_keys_per_s" not in line:
                line["baseline_keys_per_s"] = round(batch / line["baseline_ms"] * 1e3)
        emit(suite, {**line, **{k: v for k, v in extra.items() if k != "batch"}})
    status(suite, rc, seconds, timeout_s, err_path)


def ctr(suite, json_path, out_path, err_path, rc, seconds, timeout_s, batch):
    """examples/s (and the scores) of each variant from the example's ctr.json."""
    rc = int(rc)
    if rc == 0:
        try:
            with open(json_path) as f:
                payload = json.load(f)
        except (OSError, ValueError) as error:
            payload, rc = {}, 1
            with open(err_path, "a") as err:
                err.write(f"no ctr.json: {error}\n")
        for result in payload.get("variants", []):
            fields = {"name": "ctr_examples_per_s", "variant": result["variant"]}
            fields["examples_per_s"] = round(result["examples_per_s"], 1)
            fields["batch_size"] = int(batch)
            for key in ("train_examples", "train_seconds", "auc", "log_loss"):
                fields[key] = result.get(key)
            emit(suite, fields)
    status(suite, rc, seconds, timeout_s, err_path)


def tests(suite, out_path, err_path, rc, seconds, timeout_s, *args):
    """pytest's counts: its closing line, or the progress dots of a cut run."""
    try:
        text = open(out_path, errors="replace").read()
    except OSError:
        text = ""
    counts = {}
    closing = [x for x in text.splitlines() if re.search(r"\d+ (passed|failed)", x)]
    if closing:
        for n, what in re.findall(r"(\d+) (\w+)", closing[-1]):
            counts[what] = int(n)
    else:
        marks = "".join(re.findall(r"^([.FEsxX]+)\s*\[\s*\d+%\]$", text, re.M))
        counts = {"passed": marks.count("."), "failed": marks.count("F")}
        counts["errors"] = marks.count("E")
        counts["skipped"] = marks.count("s")
        counts["incomplete"] = True
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    if int(rc) == -1:
        status(suite, rc, seconds, timeout_s, err_path)
        return
    fields = {"name": "pytest", "counts": counts, "failures": failures[:20]}
    fields.update(pairs(args))
    emit(suite, fields)
    rc = int(rc)
    # pytest's exit 1 is failed tests: the error says so.
    status(suite, rc, seconds, timeout_s, out_path if rc == 1 else err_path)


def find(lines, suite, name):
    for line in lines:
        if line.get("suite") == suite and line.get("name") == name:
            return line
    return None


def summary(seconds, budget, ok):
    lines = json_lines(OUT)
    on_gpu = os.environ.get("SUITE_DEVICE", "").startswith("gpu")
    targets = []

    def target(name, found, key, bound, at_conditions, source, **more):
        measured = None if found is None else found.get(key)
        at_least = name.startswith("lookup")
        met = None
        if measured is not None:
            met = measured >= bound if at_least else measured <= bound
        entry = {"name": name, "value": measured}
        entry["target"] = f"{'>=' if at_least else '<='} {bound:g}"
        entry["met"] = met
        entry["at_target_conditions"] = bool(found is not None and at_conditions(found))
        entry["from"] = source
        entry.update(more)
        targets.append(entry)

    big_batch = lambda line: on_gpu and line.get("batch", 0) >= 65_536  # noqa: E731
    pipelined = find(lines, "lookup", "lookup_pipelined")
    per_call = find(lines, "table", "lookup_hits")
    target(
        "lookup_keys_per_s",
        pipelined,
        "keys_per_s",
        1e9,
        big_batch,
        "lookup/lookup_pipelined",
        per_call_keys_per_s=None if per_call is None else per_call.get("keys_per_s"),
        batch=None if pipelined is None else pipelined.get("batch"),
    )
    target(
        "adaptive_step_ratio",
        find(lines, "step", "adaptive_vs_static_step"),
        "ratio",
        1.2,
        big_batch,
        "step/adaptive_vs_static_step",
    )
    flat = find(lines, "step", "adaptive_step_capacity")
    target(
        "capacity_flatness",
        flat,
        "ratio",
        1.2,
        lambda line: on_gpu
        and line.get("baseline_capacity", 2**30) <= 2**20
        and line.get("capacity", 0) >= 2**24,
        "step/adaptive_step_capacity",
        capacities=None
        if flat is None
        else [flat.get("baseline_capacity"), flat.get("capacity")],
    )
    ctr_lines = [x for x in lines if x.get("name") == "ctr_examples_per_s"]
    runs = {
        x["suite"]: x["status"]
        for x in lines
        if x.get("name") == "status" and x["suite"] not in ("setup", "check")
    }
    fields = {"name": "summary", "mode": os.environ.get("SUITE_MODE"), "ok": ok == "1"}
    fields["targets"] = targets
    fields["ctr_examples_per_s"] = {x["variant"]: x["examples_per_s"] for x in ctr_lines}
    tests_line = find(lines, "tests", "pytest")
    fields["tests"] = None if tests_line is None else tests_line.get("counts")
    fields["runs"] = runs
    fields["seconds"] = round(float(seconds), 1)
    fields["budget_s"] = int(budget)
    emit("summary", fields)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "line":
        emit(args[0], pairs(args[1:]))
    else:
        {"collect": collect, "ctr": ctr, "tests": tests, "summary": summary}[command](
            *args
        )
PYEOF

# The helper's Python: the system's (the suite's own may not exist yet).
HPY="$(command -v python3 || command -v python || true)"
[[ -z $HPY && -n $PY_GIVEN ]] && HPY="$PY_GIVEN"
[[ -z $HPY && -x "$VENV/bin/python" ]] && HPY="$VENV/bin/python"
if [[ -z $HPY ]]; then
    echo "gpu_suite.sh: no python3 on PATH" >&2
    exit 1
fi
json() { "$HPY" "$WORK/suite_json.py" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
SUITE_START="$(now)"
ALL_OK=1

finish() { # exit status; the summary line first
    json summary "$(since "$SUITE_START")" "$BUDGET" "$ALL_OK"
    echo "gpu_suite.sh: JSON lines in $OUT_FILE" >&2
    exit "$1"
}

fail_setup() { # suite, message
    ALL_OK=0
    json line "$1" name=error error="$2"
    finish 1
}

# --- 1. setup -------------------------------------------------------------------
setup_start="$(now)"
if [[ -n $PY_GIVEN ]]; then
    PY="$PY_GIVEN"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    venv_how="none: --python used as it is"
elif [[ -x "$VENV/bin/python" ]]; then
    PY="$VENV/bin/python"
    venv_how="$VENV reused"
else
    base="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    if ! { "$base" -m venv "$VENV" && "$VENV/bin/python" -m pip install --quiet \
        --disable-pip-version-check -c constraints.txt -e '.[dev,examples]'; } \
        >"$WORK/setup.log" 2>&1; then
        fail_setup setup "could not make $VENV: $(tail -5 "$WORK/setup.log")"
    fi
    if [[ $VENV == .venv ]]; then touch "$VENV/.installed"; fi # the Makefile's stamp
    PY="$VENV/bin/python"
    venv_how="$VENV made"
fi
JAX_VERSION="$("$PY" -c 'import jax; print(jax.__version__)' 2>"$WORK/setup.log")" ||
    fail_setup setup "$PY cannot import jax: $(tail -3 "$WORK/setup.log")"
plugin="none (--cpu)"
if ((!CPU)) && [[ -n $PY_GIVEN ]]; then
    plugin="as installed (--python)"
elif ((!CPU)); then
    plugin=""
    for n in ${CUDA:-13 12}; do # a plugin of this jax's version there already?
        have="$("$PY" -c "import importlib.metadata as m; print(m.version('jax-cuda$n-plugin'))" 2>/dev/null)"
        if [[ $have == "$JAX_VERSION" ]]; then
            plugin="jax-cuda$n-plugin $have (there already)"
            break
        fi
    done
fi
if [[ -z $plugin ]]; then
    if [[ -z $CUDA ]]; then
        command -v nvidia-smi >/dev/null ||
            fail_setup setup "no NVIDIA driver here (nvidia-smi not found); --cpu runs on the CPU"
        driver_cuda="$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9]*' | grep -o '[0-9]*$')"
        [[ -n $driver_cuda ]] ||
            fail_setup setup "nvidia-smi names no CUDA version: $(nvidia-smi 2>&1 | head -3)"
        if ((driver_cuda >= 13)); then
            CUDA=13
        elif ((driver_cuda >= 12)); then
            CUDA=12
        else
            fail_setup setup "the driver supports CUDA $driver_cuda; jax's plugins need 12 or 13"
        fi
    fi
    timeout 1800 "$PY" -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt "jax[cuda$CUDA]==$JAX_VERSION" >"$WORK/setup.log" 2>&1 ||
        fail_setup setup "pip could not install jax[cuda$CUDA]==$JAX_VERSION (it needs PyPI; --python PY runs a Python that has a GPU jax as it is): $(tail -5 "$WORK/setup.log")"
    plugin="jax-cuda$CUDA-plugin $JAX_VERSION (installed)"
fi
json line setup name=setup python="$PY" venv="$venv_how" jax="$JAX_VERSION" \
    plugin="$plugin" seconds:="$(since "$setup_start")"

# --- 2. and 3. the check and the runs, within the budget -----------------------
RUNS_START="$(date +%s)"
DEADLINE=$((RUNS_START + BUDGET))
# Each run's share of the default budget (seconds), scaled to --budget; the tests
# get whatever the others leave.
if ((QUICK)); then
    declare -A SHARE=([check]=15 [table]=20 [lookup]=15 [step]=45 [optim]=15 [ctr]=50)
else
    declare -A SHARE=([check]=30 [table]=45 [lookup]=30 [step]=110 [optim]=30 [ctr]=90)
fi

timeout_for() { # suite -> seconds for its run: its share, or what is left
    local left=$((DEADLINE - $(date +%s) - 5)) share
    if [[ -z ${SHARE[$1]:-} ]]; then
        echo "$left"
        return
    fi
    share=$((SHARE[$1] * BUDGET / DEFAULT_BUDGET))
    if ((share < left)); then echo "$share"; else echo "$left"; fi
}

# run SUITE COMMAND...: COMMAND under its timeout, its output in $WORK/SUITE.out
# and .err; RUN_RC (-1: skipped, the budget spent), RUN_SECONDS, RUN_T.
run() {
    local suite="$1" start
    shift
    RUN_T="$(timeout_for "$suite")" RUN_SECONDS=0 RUN_RC=-1
    if ((RUN_T < 5)); then
        ALL_OK=0
        return 1
    fi
    start="$(now)"
    timeout --kill-after=5 "$RUN_T" "$@" >"$WORK/$suite.out" 2>"$WORK/$suite.err"
    RUN_RC=$?
    RUN_SECONDS="$(since "$start")"
    ((RUN_RC == 0)) || ALL_OK=0
    return "$RUN_RC"
}

collect() { # suite [key=value ...]: the run's JSON lines and its status line
    local suite="$1"
    shift
    json collect "$suite" "$WORK/$suite.out" "$WORK/$suite.err" "$RUN_RC" \
        "$RUN_SECONDS" "$RUN_T" "$@"
}

CHECK_PY='
import importlib.metadata as md, json, sys
import jax, jaxlib
import adaptive_jax
devices = jax.devices()
plugins = {}
for name in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "jax-cuda13-pjrt"):
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
'
if ! run check "$PY" -c "$CHECK_PY"; then
    fail_setup check "the check failed (exit status $RUN_RC): $(tail -5 "$WORK/check.err" 2>/dev/null)"
fi
field() { "$HPY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
platform="$(field "$WORK/check.out" platform)" || fail_setup check "no devices line"
export SUITE_DEVICE="$platform:$(field "$WORK/check.out" device_kind)"
collect check
want=$([[ $CPU == 1 ]] && echo cpu || echo gpu)
if [[ $platform != "$want" ]]; then
    fail_setup check "JAX's platform is $platform, not $want: $(head -c 400 "$WORK/check.out")"
fi

# The sizes: the benchmarks' own (full), their --quick ones (--quick; --cpu
# without --quick), and small ones for a CPU (--cpu --quick: a test of this
# script). The lookup targets' batch is 65,536 keys in both GPU modes.
CTR_BATCH=1024
if ((CPU && QUICK)); then
    TABLE_ARGS=(--quick --capacity 65536 --live 32768 --raw-ids 262144 --batch 4096)
    TABLE_BATCH=4096
    STEP_ARGS=(--quick --batch 2048 --raw-ids 262144 --buckets 16384 --capacity 32768
        --frequent 16384 --capacity-small 16384 --capacity-large 65536 --rows 16384
        --table-capacity 32768 --table-live 16384 --batches 4 --runs 5 --warmup 2)
    CTR_ARGS=(--variants adaptive --num-train 8192 --num-test 2048)
    TESTS=(tests/test_optim.py)
    WORKERS=0
elif ((QUICK || CPU)); then
    TABLE_ARGS=(--quick --capacity 1048576 --live 524288 --raw-ids 4000000 --batch 65536)
    TABLE_BATCH=65536
    STEP_ARGS=(--quick --batch 65536)
    CTR_ARGS=(--variants adaptive --num-train 50000 --num-test 10000)
    if ((QUICK)); then TESTS=(tests/test_table.py tests/test_optim.py); else TESTS=(); fi
    WORKERS=$([[ $CPU == 1 ]] && echo 2 || echo 4)
else
    TABLE_ARGS=(--batch 65536)
    TABLE_BATCH=65536
    STEP_ARGS=()
    CTR_ARGS=(--variants static adaptive --num-train 200000 --num-test 50000)
    TESTS=()
    WORKERS=4
fi

run table "$PY" benchmarks/table_bench.py "${TABLE_ARGS[@]}"
collect table batch:="$TABLE_BATCH"

for part in lookup step optim; do
    run "$part" "$PY" benchmarks/gpu_step_bench.py --part "$part" "${STEP_ARGS[@]}"
    collect "$part"
done

run ctr "$PY" -m adaptive_jax.examples.ctr "${CTR_ARGS[@]}" --batch-size "$CTR_BATCH" \
    --sweep --no-plot --no-progress --data-dir "$WORK/ctr_data" \
    --output-dir "$WORK/ctr" --json "$WORK/ctr/ctr.json"
json ctr ctr "$WORK/ctr/ctr.json" "$WORK/ctr.out" "$WORK/ctr.err" "$RUN_RC" \
    "$RUN_SECONDS" "$RUN_T" "$CTR_BATCH"

# The fast tests on the device. On a GPU: no 8-device tests, and no -O0 there.
TEST_ENV=()
TEST_ARGS=(-m "not slow" -q -x -p no:cacheprovider)
if ((WORKERS)); then TEST_ARGS+=(-n "$WORKERS"); fi
if ((!CPU)); then
    TEST_ENV=(env "XLA_FLAGS=--xla_force_host_platform_device_count=8"
        XLA_PYTHON_CLIENT_PREALLOCATE=false)
    TEST_ARGS+=(--ignore=tests/test_sharding.py --ignore=adaptive_jax/parallel/sharding.py)
fi
run tests "${TEST_ENV[@]}" "$PY" -m pytest "${TEST_ARGS[@]}" "${TESTS[@]}"
json tests tests "$WORK/tests.out" "$WORK/tests.err" "$RUN_RC" "$RUN_SECONDS" "$RUN_T" \
    paths="${TESTS[*]:-all}" workers:="$WORKERS"

# --- 4. the summary -------------------------------------------------------------
if ((ALL_OK)); then finish 0; else finish 3; fi
