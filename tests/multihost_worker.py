"""One of two processes of the multi-host test, on this machine:

    python tests/multihost_worker.py PROCESS_ID PORT OUT

Each process has 4 CPU devices; `jax.distributed` on 127.0.0.1:PORT joins them
into one mesh of 8, with CPU collectives over gloo. Each process prepares its
half of every batch of `test_sharding`'s stream and the two train the columns
of `test_sharding`, 8 partitions each, for 4 steps. Process 0 writes OUT (an
npz): the embeddings of every step and the export of the final state.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from adaptive_jax import feature_column as fc  # noqa: E402
from adaptive_jax.parallel import sharding  # noqa: E402
from adaptive_jax.persist import export  # noqa: E402

STEPS = 4


def half(features: dict, masks: dict, process: int, batch: int) -> tuple[dict, dict]:
    """This process's examples: the first or the second half of the batch."""
    rows = slice(process * batch // 2, (process + 1) * batch // 2)
    return (
        {key: value[rows] for key, value in features.items()},
        {key: value[rows] for key, value in masks.items()},
    )


def main(process: int, port: int, out: str) -> None:
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    # The stream and columns of test_sharding, which touch devices on import.
    sys.path.insert(0, os.path.dirname(__file__))
    from test_sharding import BATCH, DENSE, FTRL, columns, raw_batch, train_step

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    layout = sharding.Layout(mesh, "data")
    cols = columns(8)
    state = layout.place(fc.init_state(cols, FTRL, jax.random.key(0)), cols)
    dense, outputs = DENSE, []
    for step in range(STEPS):
        features, masks = half(*raw_batch(step), process, BATCH)
        batch = sharding.prepare(
            features, cols, layout, adaptive_mask_tensors=masks, size=16
        )
        emb, state, dense = train_step(cols, state, dense, batch, step, layout)
        outputs.append(multihost_utils.process_allgather(emb, tiled=True))
    state = multihost_utils.process_allgather(state, tiled=True)
    if process == 0:
        exported = export.export(state, cols, drop_zero_rows=False)
        arrays = {"embeddings": np.stack(outputs), "dense": np.asarray(dense)}
        for name, column in exported.columns.items():
            arrays[f"{name}.keys"] = column.keys
            arrays[f"{name}.values"] = column.values
            if column.static is not None:
                arrays[f"{name}.static"] = column.static
        np.savez(out, **arrays)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
