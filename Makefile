# Two commands to start: `make demo` and `make test`. Both set up `.venv` first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.bench-installed

# The newest releases need a newer Python (jax >= 0.11 needs 3.12): the first
# of these that runs.
LATEST_PYTHON ?= $(firstword $(foreach p,python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.1[23]*/bin/python3),$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
LATEST := .venv-latest

.PHONY: venv demo demo-more test test-all test-latest bench bench-gpu lint format clean

venv: $(INSTALLED)

# Reinstalls only when pyproject.toml or the pins change; the package itself is
# editable. constraints.txt pins what CI and the benchmarks run on (the ranges'
# floor); pyproject.toml declares the ranges.
$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "adaptive_jax needs Python >= 3.11, got " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,examples,grain]'
	@touch $@

# The CTR example on the default synthetic data (made on first use, in the user's
# cache): four kinds of embedding columns, a table, ctr_out/ctr.json and ctr.png.
demo: venv
	$(BIN)/python -m adaptive_jax.examples.ctr

demo-more: venv
	@echo "== DeepRec's adaptive-embedding seed program, in adaptive_jax =="
	$(BIN)/python examples/seed_example.py
	@echo "== An adaptive column with no mask: admission, eviction, statistics =="
	$(BIN)/python examples/adaptive_policy.py
	@echo "== The dynamic table under a stream of ids =="
	$(BIN)/python examples/table_demo.py
	@echo "== A two-tower model in Flax NNX: training, checkpoint, export, serving =="
	$(BIN)/python examples/two_tower.py

# Two workers: the tests are mostly XLA compiles, one core each.
test: venv lint
	$(BIN)/python -m pytest -m "not slow" -q -n 2

test-all: venv
	$(BIN)/python -m pytest -q -n 2

# The suite on the newest releases that install (no pins), in a venv of its own.
test-latest:
	@test -n "$(LATEST_PYTHON)" || (echo "test-latest needs Python >= 3.12 (set LATEST_PYTHON)"; exit 1)
	@test -x $(LATEST)/bin/python || $(LATEST_PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -e '.[dev,examples,grain]'
	$(LATEST)/bin/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy)=='
	$(LATEST)/bin/python -m pytest -m "not slow" -q -n 2

# The benchmarks compare with TensorFlow: the `bench` extra adds it (what is
# installed already, pinned, stays).
$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,examples,grain,bench]'
	@touch $@

bench: $(BENCH_INSTALLED)
	$(BIN)/python benchmarks/table_bench.py
	$(BIN)/python benchmarks/hash_bench.py
	$(BIN)/python benchmarks/input_bench.py
	$(BIN)/python benchmarks/optim_bench.py
	$(BIN)/python benchmarks/step_bench.py
	$(BIN)/python benchmarks/checkpoint_bench.py
	$(BIN)/python benchmarks/export_bench.py
	$(BIN)/python benchmarks/shard_bench.py
	$(BIN)/python benchmarks/flax_bench.py

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(LATEST) ctr_out claim_out .pytest_cache .ruff_cache .hypothesis *.egg-info

# The GPU suite (benchmarks/gpu_suite.py): the CUDA plugin of the pinned jax into
# .venv-gpu, a check that JAX sees the GPU, then the table, train-step, FTRL and
# CTR benchmarks and the fast tests on it, in 8 minutes, JSON lines into
# build/gpu_suite.jsonl. `make bench-gpu BENCH_GPU_ARGS=--quick` for 3 minutes;
# `--cpu` runs it on the CPU; `--help` for the rest.
bench-gpu:
	$(PYTHON) benchmarks/gpu_suite.py $(BENCH_GPU_ARGS)
