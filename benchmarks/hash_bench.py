"""Speed of the id hashes: TensorFlow's buckets on the host, the device hash.

Run: `python benchmarks/hash_bench.py [--quick]`.

- `to_hash_bucket_fast` over 1M random strings of 8 to 24 bytes, and over 1M
  random int64 ids (through their decimal strings), on one core: `ids_per_s`,
  against the bare loop `[farmhash.Fingerprint64(s) for s in strings]` (for ints,
  `str` then `Fingerprint64`) as baseline. Target: >= 2M ids/s.
- `hashing.bucket` of 65,536 ids on device, jitted, against `jnp.take` of 65,536
  rows from a dense `[1M, 16] float32` array. Target: ratio <= 1.

One JSON line per measurement; medians after warm-up.
"""

from __future__ import annotations

import argparse
import string
import time

import farmhash
import jax
import jax.numpy as jnp
import numpy as np
from _timing import report

from adaptive_jax import hashing, ids

TARGET_IDS_PER_S = 2e6


def median_ms(fn, runs: int, warmup: int = 1) -> float:
    times = []
    for _ in range(runs + warmup):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times[warmup:]) * 1e3)


def random_strings(rng: np.random.Generator, count: int) -> list[str]:
    """`count` random strings of 8 to 24 characters (letters, digits, _)."""
    alphabet = np.array(list(string.ascii_lowercase + string.digits + "_"))
    lengths = rng.integers(8, 25, count)
    chars = alphabet[rng.integers(0, len(alphabet), lengths.sum())]
    return ["".join(word) for word in np.split(chars, np.cumsum(lengths)[:-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ids and runs")
    parser.add_argument("--num-ids", type=int, default=1_000_000)
    parser.add_argument("--device-batch", type=int, default=65_536)
    args = parser.parse_args()
    num_ids = 200_000 if args.quick else args.num_ids
    host_runs, device_runs = (3, 9) if args.quick else (5, 30)
    rng = np.random.default_rng(0)

    strings = random_strings(rng, num_ids)
    ints = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, num_ids)
    for name, values, bare in (
        (
            "to_hash_bucket_fast_strings",
            strings,
            lambda: [farmhash.Fingerprint64(s) for s in strings],
        ),
        (
            "to_hash_bucket_fast_int64",
            ints,
            lambda: [farmhash.Fingerprint64(str(i)) for i in ints.tolist()],
        ),
    ):
        ms = median_ms(
            lambda values=values: hashing.to_hash_bucket_fast(values, 1_000_003),
            host_runs,
        )
        base = median_ms(bare, host_runs)
        report(
            name,
            ms,
            base,
            ids_per_s=round(num_ids / ms * 1e3),
            target_ids_per_s=TARGET_IDS_PER_S,
        )

    batch = args.device_batch
    keys = ids.from_numpy(
        rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, batch)
    )
    rows = jnp.asarray(rng.integers(0, 1_000_000, batch), jnp.int32)
    values = jnp.asarray(rng.standard_normal((1_000_000, 16), dtype=np.float32))
    bucket = jax.jit(hashing.bucket, static_argnums=1)
    take = jax.jit(lambda v, r: jnp.take(v, r, axis=0))
    ms = median_ms(lambda: bucket(keys, 1_000_003), device_runs, warmup=10)
    base = median_ms(lambda: take(values, rows), device_runs, warmup=10)
    report("device_bucket", ms, base, batch=batch)


if __name__ == "__main__":
    main()
