"""Test settings: strict dtype and rank promotion, and 8 CPU devices for sharding.

Strict promotion turns a silent int64 -> int32 or int -> float promotion into an
error, so that the library's arithmetic on ids and rows stays in the dtypes it
means.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
