"""Save and restore speed of a 1M x 16 training state, against numpy files.

Run: `python benchmarks/checkpoint_bench.py [--quick]`.

The state: one plain dynamic column of capacity 2**20 (every row holding a
key), dim 16, FTRL slots: values, accumulators, linears, keys, index, free
list, counters, sketch-free (about 230 MB). `checkpoint_save`: `Checkpointer.save`
(orbax, atomic, with the manifest and its checksums) to a fresh directory, until
the files are written; `checkpoint_restore`: `Checkpointer.restore` into a fresh
target, checksums verified. Each against the same bytes written (`np.save`) and
read (`np.load`) as plain files in the same place: the disk's own speed. Files
just written are read back from the page cache, in both. Target: >= 100 MB/s
each.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import adaptive_jax as aj
from adaptive_jax import checkpoint
from adaptive_jax import feature_column as fc
from adaptive_jax import table as table_lib

CAPACITY, DIM = 2**20, 16


def full_state() -> dict:
    """A column whose every row holds a key, values and slots drawn at random."""
    option = aj.EmbeddingVariableOption(capacity=CAPACITY)
    column = fc.embedding_column(
        fc.categorical_column_with_embedding("ids", dtype="int64", ev_option=option),
        DIM,
    )
    optimizer = aj.optim.ftrl(0.05)
    state = fc.init_state([column], optimizer, jax.random.key(0))
    dynamic = state[column.name].dynamic
    insert = jax.jit(table_lib.lookup_or_insert, donate_argnums=0)
    table, chunk = dynamic.table, 2**16
    for start in range(0, CAPACITY, chunk):
        keys = jnp.arange(start, start + chunk) * 7919 + 1
        table, _ = insert(table, keys.astype(jnp.int32), jnp.ones(chunk, bool))
    draw = jax.random.normal(jax.random.key(1), (3, CAPACITY, DIM))
    dynamic = dynamic.replace(
        table=table,
        values=draw[0],
        slots=type(dynamic.slots)(jnp.abs(draw[1]) + 0.1, draw[2]),
    )
    state[column.name] = state[column.name].replace(dynamic=dynamic)
    return state


def numpy_save(host: list[np.ndarray], directory: pathlib.Path) -> None:
    directory.mkdir()
    for i, array in enumerate(host):
        np.save(directory / f"{i}.npy", array)


def numpy_load(count: int, directory: pathlib.Path) -> list[np.ndarray]:
    return [np.load(directory / f"{i}.npy") for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs, warmup = (2, 1) if args.quick else (5, 1)
    state = full_state()
    target = jax.tree.map(jnp.zeros_like, state)
    host = [np.asarray(x) for x in jax.tree.leaves(state)]
    megabytes = sum(a.nbytes for a in host) / 1e6
    root = pathlib.Path(tempfile.mkdtemp(prefix="checkpoint_bench_"))
    times = {"save": [], "restore": [], "np_save": [], "np_load": []}
    try:
        for run in range(runs + warmup):
            where = root / f"run{run}"
            ours = checkpoint.Checkpointer(where / "ckpt", max_to_keep=1)
            clock = time.perf_counter()
            ours.save(1, state)
            save = time.perf_counter() - clock
            clock = time.perf_counter()
            restored = jax.block_until_ready(ours.restore(target))
            restore = time.perf_counter() - clock
            ours.close()
            assert int(restored["ids_embedding"].dynamic.table.num_free) == 0
            clock = time.perf_counter()
            numpy_save(host, where / "npy")
            np_save = time.perf_counter() - clock
            clock = time.perf_counter()
            numpy_load(len(host), where / "npy")
            np_load = time.perf_counter() - clock
            if run >= warmup:
                measured = (save, restore, np_save, np_load)
                for name, seconds in zip(times, measured, strict=True):
                    times[name].append(seconds)
            shutil.rmtree(where)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, baseline in (("save", "np_save"), ("restore", "np_load")):
        ours_s, base_s = np.median(times[name]), np.median(times[baseline])
        line = {
            "name": f"checkpoint_{name}",
            "megabytes": round(megabytes, 1),
            "median_s": round(float(ours_s), 3),
            "mb_per_s": round(megabytes / ours_s, 1),
            "baseline": f"numpy {baseline[3:]}",
            "baseline_mb_per_s": round(megabytes / base_s, 1),
            "ratio": round(float(ours_s / base_s), 3),
            "target_mb_per_s": 100,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
