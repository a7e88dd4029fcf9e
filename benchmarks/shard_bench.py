"""A training step with the dynamic table split over 8 CPU devices, against one.

Run: `python benchmarks/shard_bench.py [--quick]` (it asks XLA for 8 CPU
devices itself).

One adaptive column, dim 16, 2**18 static buckets (replicated), a dynamic table
of capacity 2**20 (8 partitions of 2**17 rows when split), a global batch of
65,536 ids (one per example) drawn Zipf(1.1) over 2M raw ids, the 256K most
frequent routed to the dynamic table by the mask. The step (`input_layer`, the
gradient of `sum(tanh(emb) * g)`, `apply_gradients`) is jitted with the state
donated, once on one device with one table, once on a mesh of 8 with the
batch and the partitions split over it and exchange limits from
`sharding.suggest_limits`; the two alternate batch by batch.

- `sharded_step_8_devices_adaptive`: the 8-device step against the 1-device
  step at the same global batch. The 2 real cores are shared by the 8 devices,
  so this is the overhead of the exchange, not a speed-up. Target: ratio <= 1.5.
  The static table is replicated: every device applies the whole batch's static
  update, gathered in buffers of `sharding.suggest_static_limits` entries per
  device (the masked-out ids) when they fit.
- `sharded_step_8_devices_adaptive_gather_all`: the same, the static update
  gathering every entry of every device (no static limit).
- `sharded_step_8_devices_dynamic`: the same for a plain dynamic column (no
  static table): the exchange alone.
- `sharded_step_8_devices_adaptive_tight`: the adaptive step with buffers of
  1.25 times the mean entries per (device, partition) (a device's repeats of a
  key are one entry): fewer padded slots, and the overflows (served by the
  static buckets) it costs.
- `sharded_step_8_devices_adaptive_split_static`: the adaptive step with the
  static table split by rows over the 8 devices (`Layout(split_static=...)`)
  instead of replicated, in buffers of `sharding.suggest_split_limits`
  distinct buckets per (device, owner). Target: ratio <= 1.6.
- `sharded_step_8_devices_adaptive_split_static_unbounded`: the same with
  buffers of every entry (no split limit).
- `exchange_bytes`: on meshes of 1, 2, 4 and 8 devices (8 partitions), with
  the static table replicated and split, the bytes each device hands the
  all-to-alls and the all-gather in the compiled step (read from its HLO),
  against the cost model of docs/scaling.md. Target: within 10%.
- `state_bytes_per_device`: the state one device holds, against the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import adaptive_jax as aj  # noqa: E402
from adaptive_jax import feature_column as fc  # noqa: E402
from adaptive_jax import sharding  # noqa: E402

DIM = 16
BUCKETS = 2**18
CAPACITY = 2**20
DEVICES = 8
PARTITIONS = 8
RAW_IDS = 2_000_000
FREQUENT = 256 * 1024
FTRL = aj.optim.ftrl(0.05, l1_regularization_strength=0.01)
_BYTES = {"f32": 4, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}


def column(parts: int | None, kind: str = "adaptive") -> fc.EmbeddingColumn:
    option = aj.EmbeddingVariableOption(capacity=CAPACITY)
    if kind == "dynamic":
        categorical = fc.categorical_column_with_embedding(
            "ids", dtype="int64", partition_num=parts, ev_option=option
        )
    else:
        categorical = fc.categorical_column_with_adaptive_embedding(
            "ids", BUCKETS, dtype="int64", partition_num=parts, ev_option=option
        )
    return fc.embedding_column(categorical, DIM, "mean")


def raw_batch(rng: np.random.Generator, batch: int) -> tuple[dict, dict]:
    ranks = np.empty(0, np.int64)
    while ranks.size < batch:
        draw = rng.zipf(1.1, 2 * batch) - 1
        ranks = np.concatenate([ranks, draw[draw < RAW_IDS]])
    ranks = ranks[:batch]
    ids = (ranks * 2_654_435_761) % (2**40)  # raw ids, spread
    return {"ids": ids[:, None]}, {"ids": (ranks < FREQUENT).astype(np.int32)}


def make_step(columns: list, layout: sharding.Layout | None):
    def step(state, features, g):
        emb, state, residuals = fc.input_layer(
            features, columns, state, optimizer=FTRL, layout=layout
        )
        d_emb = jax.grad(lambda e: jnp.sum(jnp.tanh(e) * g))(emb)
        return fc.apply_gradients(state, residuals, d_emb, columns, FTRL, layout=layout)

    return jax.jit(step, donate_argnums=0)


def collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes of the results of each kind of collective in compiled HLO text
    (an all-to-all's result is as large as what a device hands it)."""
    totals = {"all-to-all": 0, "all-gather": 0}
    for line in hlo.splitlines():
        match = re.search(r"=\s*(.*?)\s+(all-to-all|all-gather)(-start)?\(", line)
        if not match:
            continue
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", match.group(1)):
            size = int(np.prod([int(d) for d in dims.split(",") if d]))
            totals[match.group(2)] += size * _BYTES[dtype]
    return totals


def model_bytes(
    devices: int,
    limit: int,
    local_ids: int,
    split_static: bool,
    static_limit: int,
    split_limit: int,
) -> dict[str, int]:
    """docs/scaling.md: per device and step, P partitions over D devices. On
    one device the exchanges are reshapes. A static limit below the local ids
    puts two all-gathers in the program (`lax.cond`): the compacted one, taken
    when every device fits, and the whole one; both are counted. So does a
    split limit below the local ids for the split table's all-to-alls."""
    gathered = local_ids + (static_limit if static_limit < local_ids else 0)
    slots, row = PARTITIONS * limit, 4 * DIM
    if devices == 1:
        return {
            "all-to-all": 0,
            "all-gather": 0 if split_static else gathered * (4 + row),
        }
    if not split_static:
        return {
            # keys hi, lo, bucket, repeats out; rows, flags back; gradients out.
            "all-to-all": slots * (16 + (row + 1) + row),
            "all-gather": devices * gathered * (4 + row),  # static rows, grads
        }
    split = local_ids + (split_limit if split_limit < local_ids else 0)
    return {
        # keys hi, lo, repeats and the bucket's row out; rows, flags back;
        # gradients out; the static read (bucket out, row back) and update
        # (bucket, gradient out), in buffers of `split_limit` distinct buckets
        # per (device, owner), and of every local entry (the other branch).
        "all-to-all": slots * (12 + row + (row + 1) + row)
        + devices * split * (4 + row + 4 + row),
        "all-gather": 0,
    }


def mesh_layout(
    sample: list,
    columns: list,
    devices: int,
    *,
    split_static: bool,
    static_limit: bool = True,
) -> sharding.Layout:
    """A layout over the first `devices` devices with the limits suggested from
    `sample`: static limits for a replicated static table, split limits for a
    split one (`static_limit` False: neither, buffers of every entry)."""
    static_limits = split_limits = {}
    if static_limit and not split_static:
        static_limits = sharding.suggest_static_limits(sample, columns, devices)
    if static_limit and split_static:
        split_limits = sharding.suggest_split_limits(sample, columns, devices)
    return sharding.Layout(
        jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",)),
        "data",
        limits=sharding.suggest_limits(sample, columns, devices),
        static_limits=static_limits,
        split_static=split_static,
        split_static_limits=split_limits,
    )


def mean_sent(inputs) -> float:
    """The mean entries per (device, partition) of a batch on the 8-device mesh:
    the distinct routed keys of each device's share."""
    valid = np.asarray(inputs.ids.valid)
    if inputs.to_dynamic is not None:
        valid = valid & np.asarray(inputs.to_dynamic)
    share = inputs.ids.batch_size // DEVICES
    source = np.asarray(inputs.ids.row_ids)[valid] // share
    keys = inputs.ids.values
    hi, lo = (np.asarray(word)[valid] for word in (keys.hi, keys.lo))
    distinct = np.unique(np.stack([source, hi, lo]).astype(np.int64), axis=1)
    return distinct.shape[1] / (DEVICES * PARTITIONS)


def device_bytes(state, device) -> int:
    total = 0
    for leaf in jax.tree.leaves(state):
        for shard in leaf.addressable_shards:
            if shard.device == device:
                total += shard.data.nbytes
    return total


def timed_steps(
    kind: str,
    raws: list,
    batch: int,
    warmup: int,
    *,
    tight: bool = False,
    split_static: bool = False,
    static_limit: bool = True,
) -> dict[str, int]:
    """The 8-device step against the 1-device step, alternated; returns the
    1-device state's bytes (whole, dynamic and static table). `tight`: buffers
    of 1.25 times the mean distinct keys per (device, partition) instead of the
    suggested limit (which covers the hottest pair). `split_static`: the static
    table split by rows over the devices. `static_limit`: the replicated static
    update gathers `suggest_static_limits` entries per device (else all)."""
    one, split = [column(None, kind)], [column(DEVICES, kind)]
    masks_of = (lambda m: m) if kind == "adaptive" else (lambda m: None)
    sample = [
        fc.prepare(f, split, adaptive_mask_tensors=masks_of(m)) for f, m in raws[:4]
    ]
    layout = mesh_layout(
        sample, split, DEVICES, split_static=split_static, static_limit=static_limit
    )
    if tight:
        mean = np.mean([mean_sent(prepared["ids_embedding"]) for prepared in sample])
        limits = {"ids_embedding": int(1.25 * mean)}
        layout = dataclasses.replace(layout, limits=limits)
    limits, static_limits = dict(layout.limits), dict(layout.static_limits)
    mesh = layout.mesh
    local = batch // DEVICES
    single = jax.device_put(
        fc.init_state(one, FTRL, jax.random.key(0)), jax.devices()[0]
    )
    sharded = layout.place(fc.init_state(split, FTRL, jax.random.key(0)), split)
    step_one, step_split = make_step(one, None), make_step(split, layout)
    g = jnp.ones((batch, DIM), jnp.float32)
    g_split = jax.device_put(g, jax.sharding.NamedSharding(mesh, layout.split()))
    batches = [
        (
            fc.prepare(f, one, adaptive_mask_tensors=masks_of(m), size=batch),
            sharding.prepare(
                f, split, layout, adaptive_mask_tensors=masks_of(m), size=local
            ),
        )
        for f, m in raws
    ]
    times = []
    for prepared_one, prepared_split in batches:
        start = time.perf_counter()
        single = jax.block_until_ready(step_one(single, prepared_one, g))
        middle = time.perf_counter()
        sharded = jax.block_until_ready(step_split(sharded, prepared_split, g_split))
        times.append((middle - start, time.perf_counter() - middle))
    base_ms, split_ms = np.median(np.asarray(times[warmup:]), axis=0) * 1e3
    summary = fc.summary(jax.device_get(sharded))["ids_embedding"]
    unlimited = kind == "adaptive" and not static_limit
    print(
        json.dumps(
            {
                "name": f"sharded_step_8_devices_{kind}"
                + ("_tight" * tight)
                + ("_split_static" * split_static)
                + (("_unbounded" if split_static else "_gather_all") * unlimited),
                "median_ms": round(float(split_ms), 3),
                "baseline_ms": round(float(base_ms), 3),
                "ratio": round(float(split_ms / base_ms), 3),
                "global_batch": batch,
                "limit": limits["ids_embedding"],
                "static_limit": static_limits.get("ids_embedding"),
                "split_limit": dict(layout.split_static_limits).get("ids_embedding"),
                "exchange_overflows": summary["exchange_overflows"],
                "split_overflows": summary["split_overflows"],
            }
        ),
        flush=True,
    )
    return {
        "whole": device_bytes(single, jax.devices()[0]),
        "dynamic": sum(
            x.nbytes for x in jax.tree.leaves(single["ids_embedding"].dynamic)
        ),
        "static": sum(
            x.nbytes for x in jax.tree.leaves(single["ids_embedding"].static)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batch, steps, warmup = (4096, 6, 2) if args.quick else (65536, 20, 4)
    rng = np.random.default_rng(0)
    raws = [raw_batch(rng, batch) for _ in range(steps)]
    one_bytes = {}
    for kind in ("adaptive", "dynamic"):
        one_bytes[kind] = timed_steps(kind, raws, batch, warmup)
    timed_steps("adaptive", raws, batch, warmup, static_limit=False)
    timed_steps("adaptive", raws, batch, warmup, tight=True)
    timed_steps("adaptive", raws, batch, warmup, split_static=True)
    timed_steps("adaptive", raws, batch, warmup, split_static=True, static_limit=False)
    local = batch // DEVICES
    for split_static in (False, True):
        for devices in (1, 2, 4, 8):
            exchange(
                devices,
                raws[:4],
                local * DEVICES // devices,
                one_bytes["adaptive"],
                split_static,
            )


def exchange(
    devices: int, raws: list, local: int, one_bytes: dict, split_static: bool
) -> None:
    """The collectives' bytes and the state per device on a mesh of `devices`."""
    split = [column(PARTITIONS)]
    sample = [fc.prepare(f, split, adaptive_mask_tensors=m) for f, m in raws]
    layout = mesh_layout(sample, split, devices, split_static=split_static)
    limits, static_limits = dict(layout.limits), dict(layout.static_limits)
    mesh = layout.mesh
    state = layout.place(fc.init_state(split, FTRL, jax.random.key(0)), split)
    features, masks = raws[0]
    prepared = sharding.prepare(
        features, split, layout, adaptive_mask_tensors=masks, size=local
    )
    g = jax.device_put(
        jnp.ones((local * devices, DIM), jnp.float32),
        jax.sharding.NamedSharding(mesh, layout.split()),
    )
    compiled = make_step(split, layout).lower(state, prepared, g).compile()
    measured = collective_bytes(compiled.as_text())
    limit = min(limits["ids_embedding"], local)
    static_limit = static_limits.get("ids_embedding", local)
    split_limit = dict(layout.split_static_limits).get("ids_embedding", local)
    model = model_bytes(devices, limit, local, split_static, static_limit, split_limit)
    for kind in measured:
        line = {
            "name": f"exchange_bytes_{kind}",
            "devices": devices,
            "split_static": split_static,
            "limit": limit,
            "static_limit": None if split_static else static_limit,
            "split_limit": split_limit if split_static else None,
            "measured_bytes_per_device": measured[kind],
            "model_bytes_per_device": model[kind],
        }
        if model[kind]:
            line["ratio"] = round(measured[kind] / model[kind], 4)
        print(json.dumps(line), flush=True)
    divided = one_bytes["dynamic"] + split_static * one_bytes["static"]
    print(
        json.dumps(
            {
                "name": "state_bytes_per_device",
                "devices": devices,
                "split_static": split_static,
                "measured_bytes": device_bytes(state, jax.devices()[0]),
                "model_bytes": one_bytes["whole"] - divided + divided // devices,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
