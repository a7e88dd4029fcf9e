"""Test settings: strict dtype and rank promotion, 8 CPU devices for sharding,
fast compiles, and one XLA compilation cache for the whole run.

Strict promotion turns a silent int64 -> int32 or int -> float promotion into an
error, so that the library's arithmetic on ids and rows stays in the dtypes it
means. The compilation cache is shared, through the environment, by the
pytest-xdist workers and the subprocesses of the multi-process tests, which
compile many of the same programs; it is removed at the end of the run.
"""

import os
import shutil
import tempfile

# The tests' programs are small and many: XLA's LLVM backend at -O0 compiles them
# about a sixth faster in all. The numbers do not depend on it: XLA:CPU leaves
# fast-math off, so LLVM may not reorder float arithmetic at any level. The flag
# reaches a GPU backend too (its kernels at -O0): benchmarks/gpu_suite.py sets
# XLA_FLAGS itself for its test run. The sharding tests build their meshes from
# `jax.devices("cpu")`, so they run on 8 host devices beside an accelerator.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0",
)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="aj_xla_")
    os.environ["ADAPTIVE_JAX_TEST_CACHE_OWNER"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # noqa: E402

# Scripts that tests start in processes of their own, not test modules: importing
# the multi-host worker would set this process's devices and collectives.
collect_ignore = ["tests/multihost_worker.py", "tests/resume_worker.py"]

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_unconfigure(config):
    """The process that made the cache removes it."""
    if os.environ.get("ADAPTIVE_JAX_TEST_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
