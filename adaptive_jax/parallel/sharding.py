"""Training state and batches over a device mesh, with JAX's own runtime.

A `Layout(mesh, axis)` says where things live: the batch is split over the mesh
axis `axis` (data parallel), each partitioned column's partitions too (device
`d` of D owns partitions `[d * P / D, (d + 1) * P / D)`), the static tables
named in `split_static` by rows (device `d` owns buckets `[d * B / D, (d + 1) *
B / D)`, see `static_split`), and the rest of the state (the other static
tables, default values, statistics, steps) is replicated. The
feature-column functions take `layout=` and run their per-device bodies in
`jax.shard_map`: a lookup sends each entry to the owner of its key and its row
back with all-to-alls (see `partitioned`), in buffers of `limits[column]`
entries per (source device, partition); `suggest_limits` sizes them from
observed batches. The dense model needs nothing: the embeddings come out split
over the batch, and `jax.jit` keeps the model data parallel.

Across hosts, the same code runs in every process after
`jax.distributed.initialize(...)`; each process `prepare`s its own examples
(with the same `size` in every process), and the mesh spans all devices.

Example (on 2 of the 8 CPU devices that
`XLA_FLAGS=--xla_force_host_platform_device_count=8` gives, beside an accelerator
too):
  >>> import jax, numpy as np
  >>> from adaptive_jax import feature_column as fc, optim, sharding
  >>> mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
  >>> layout = sharding.Layout(mesh, "data")
  >>> column = fc.embedding_column(fc.categorical_column_with_embedding(
  ...     "item", dtype="int64", partition_num=2), dimension=4)
  >>> opt = optim.ftrl(0.1)
  >>> state = layout.place(fc.init_state([column], opt, jax.random.key(0)), [column])
  >>> batch = sharding.prepare({"item": np.arange(8)[:, None]}, [column], layout)
  >>> emb, state, residuals = fc.input_layer(batch, [column], state, optimizer=opt,
  ...                                        layout=layout)
  >>> emb.shape, len(emb.sharding.device_set)
  ((8, 4), 2)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax.column import adaptive, stacking
from adaptive_jax.ids import _device_hash
from adaptive_jax.ids import sparse as sparse_lib
from adaptive_jax.parallel.layout import Layout as Layout


def prepare(
    features: Mapping[str, Any],
    feature_columns: Sequence[fc.EmbeddingColumn],
    layout: Layout,
    *,
    adaptive_mask_tensors: Mapping[str, Any] | None = None,
    size: int | None = None,
    int_buckets: str = "device",
) -> dict[str, adaptive.ColumnIds]:
    """`feature_column.prepare` for a mesh: this process's examples split into
    equal runs, one per local device along the axis, and placed as global
    arrays split over the axis (each device's `batch_size` is its share).

    Args:
      features, adaptive_mask_tensors, int_buckets: as
        `feature_column.prepare`; the number of examples must divide evenly
        over this process's devices.
      feature_columns: the columns.
      layout: the layout.
      size: ids per device per column (padded); None for the smallest power of
        two that fits every device's share. Give it in multi-process runs, so
        that every process pads alike.

    Raises:
      ValueError: as `feature_column.prepare`; examples that do not split
        evenly over the devices; a share with more ids than `size`.
    """
    layout.check(feature_columns)
    devices = _local_devices(layout)
    whole = fc.prepare(
        features,
        feature_columns,
        adaptive_mask_tensors=adaptive_mask_tensors,
        int_buckets=int_buckets,
    )
    fields = {c.name: c.categorical_column.fields for c in feature_columns}
    examples = next(iter(whole.values())).ids.batch_size // fields[next(iter(whole))]
    if examples % devices:
        raise ValueError(
            f"the batch of {examples} examples does not split evenly over the "
            f"{devices} local devices of mesh axis '{layout.axis}'"
        )
    # A device's share of each column's rows: its examples (a stacked column's
    # rows are example-major, so they stay together).
    shares = {name: examples // devices * fields[name] for name in whole}
    if size is None:
        size = max(
            sparse_lib.padded_size(
                int(np.max(_ids_per_share(ids, shares[name], devices)))
            )
            for name, ids in whole.items()
        )
    sharding = NamedSharding(layout.mesh, P(layout.axis))
    prepared = {}
    for name, inputs in whole.items():
        share = shares[name]
        shards = [_shard(inputs, d * share, share, size, name) for d in range(devices)]
        local = jax.tree.map(lambda *xs: np.concatenate(xs), *shards)
        prepared[name] = jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, x), local
        )
    return prepared


def _local_devices(layout: Layout) -> int:
    """Devices of this process along the axis."""
    local = {d.id for d in jax.local_devices()}
    axis = layout.mesh.axis_names.index(layout.axis)
    along = np.moveaxis(layout.mesh.devices, axis, 0)
    return sum(1 for row in along.reshape(along.shape[0], -1) if row[0].id in local)


def _ids_per_share(inputs: adaptive.ColumnIds, share: int, devices: int) -> np.ndarray:
    rows = np.asarray(inputs.ids.row_ids)[np.asarray(inputs.ids.valid)]
    return np.bincount(rows // share, minlength=devices)


def _shard(
    inputs: adaptive.ColumnIds, start: int, count: int, size: int, name: str
) -> adaptive.ColumnIds:
    """The ids of examples `[start, start + count)`, as a batch of its own of
    `size` entries, on the host."""
    batch = inputs.ids
    indices = np.asarray(batch.indices)
    keep = np.asarray(batch.valid) & (indices[:, 0] >= start)
    keep &= indices[:, 0] < start + count
    kept = int(keep.sum())
    if kept > size:
        raise ValueError(
            f"column '{name}': a device's share has {kept} ids, more than size {size}"
        )

    def pad(x: np.ndarray) -> np.ndarray:
        out = np.zeros((size,) + x.shape[1:], x.dtype)
        out[:kept] = x[keep]
        return out

    indices = pad(indices)
    indices[:kept, 0] -= start
    indices[kept:, 0] = count  # padding: outside the batch
    keys = pad(ids_lib.to_numpy(batch.values)).view(np.uint64)
    mask = inputs.to_dynamic
    return adaptive.ColumnIds(
        ids=sparse_lib.SparseIds(
            indices=indices,
            values=ids_lib.Ids(
                (keys >> np.uint64(32)).astype(np.uint32),
                (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32),
            ),
            valid=np.arange(size) < kept,
            dense_shape=np.array([count, np.asarray(batch.dense_shape)[1]], np.int32),
            batch_size=count,
            strings=batch.strings,
            weights=None if batch.weights is None else pad(np.asarray(batch.weights)),
        ),
        buckets=None if inputs.buckets is None else pad(np.asarray(inputs.buckets)),
        to_dynamic=None if mask is None else pad(np.asarray(mask)),
        hash_bucket_size=inputs.hash_bucket_size,
    )


def suggest_limits(
    batches: Sequence[Mapping[str, adaptive.ColumnIds]],
    feature_columns: Sequence[fc.EmbeddingColumn],
    devices: int,
    *,
    margin: float = 1.25,
) -> dict[str, int]:
    """Exchange limits from observed batches (`prepare`d for one device, or
    for the mesh): the most entries any (device, partition) pair received (a
    device's repeats of a key are one entry), times `margin`, rounded up to a
    multiple of 8.

    Args:
      batches: a few prepared batches, of the global batch (not split).
      feature_columns: the columns.
      devices: devices along the mesh axis.
      margin: head room over the largest count seen.
    """
    limits = {}
    for column in feature_columns:
        parts = column.categorical_column.partition_num
        if parts is None:
            continue
        most = 1
        for batch in batches:
            inputs = batch[column.name]
            valid = np.asarray(inputs.ids.valid)
            keys = inputs.ids.values
            partition = np.asarray(_device_hash.partition(keys, parts))
            if inputs.to_dynamic is not None:
                valid = valid & np.asarray(inputs.to_dynamic)
            pairs = _sources(inputs, devices)[valid] * parts + partition[valid]
            hi, lo = (np.asarray(word)[valid] for word in (keys.hi, keys.lo))
            words = np.stack([pairs, hi, lo]).astype(np.int64)
            distinct = np.unique(words, axis=1)[0]
            if distinct.size:
                most = max(most, int(np.bincount(distinct).max()))
        limits[column.name] = _rounded(most * margin)
    return limits


def _sources(inputs: adaptive.ColumnIds, devices: int) -> np.ndarray:
    """The device along the axis whose share holds each entry of a global batch."""
    share = -(-inputs.ids.batch_size // devices)
    return np.minimum(np.asarray(inputs.ids.row_ids) // share, devices - 1)


def _rounded(entries: float) -> int:
    """A limit: `entries` rounded up to a multiple of 8."""
    return int(-(-int(np.ceil(entries)) // 8) * 8)


def suggest_static_limits(
    batches: Sequence[Mapping[str, adaptive.ColumnIds]],
    feature_columns: Sequence[fc.EmbeddingColumn],
    devices: int,
    *,
    margin: float = 1.25,
) -> dict[str, int]:
    """Limits of the static updates' all-gathers from observed batches (as
    `suggest_limits`): for the adaptive columns with a routing mask, the most
    ids that any device's share sends to the static table, times `margin`,
    rounded up to a multiple of 8. (Ids that the dynamic table refuses also
    train their buckets; a step with more than the limit on some device
    gathers every entry, so a limit costs nothing but speed when it is short.)
    """
    limits = {}
    for column in feature_columns:
        if column.categorical_column.hash_bucket_size is None:
            continue
        most = 1
        for batch in batches:
            inputs = batch[column.name]
            if inputs.to_dynamic is None:  # routed by admission: not known here
                break
            static = np.asarray(inputs.ids.valid) & ~np.asarray(inputs.to_dynamic, bool)
            source = _sources(inputs, devices)[static]
            most = max(most, int(np.bincount(source, minlength=1).max()))
        else:
            limits[column.name] = _rounded(most * margin)
    return limits


def suggest_split_limits(
    batches: Sequence[Mapping[str, adaptive.ColumnIds]],
    feature_columns: Sequence[fc.EmbeddingColumn],
    devices: int,
    *,
    margin: float = 1.25,
) -> dict[str, int]:
    """Exchange limits of static tables split by rows, from observed batches
    (as `suggest_limits`): for each column with a static table, the most
    distinct buckets that any device's share reads from any owner (every valid
    id reads its bucket, for migration or to be served), times `margin`,
    rounded up to a multiple of 8. A step with more reads and trains through
    buffers of every entry, so a short limit costs speed, never a lookup.
    """
    limits = {}
    for column in feature_columns:
        buckets = column.categorical_column.hash_bucket_size
        if buckets is None:
            continue
        local = -(-buckets // devices)  # the buckets each device owns
        most = 1
        for batch in batches:
            inputs = batch[column.name]
            valid = np.asarray(inputs.ids.valid)
            rows = _host_buckets(inputs, column.categorical_column)[valid]
            rows = rows.astype(np.int64)
            pairs = _sources(inputs, devices)[valid] * devices + rows // local
            distinct = np.unique(np.stack([pairs, rows]), axis=1)[0]
            if distinct.size:
                most = max(most, int(np.bincount(distinct).max()))
        limits[column.name] = _rounded(most * margin)
    return limits


@functools.partial(jax.jit, static_argnums=(1, 2))
def _step_buckets(
    inputs: adaptive.ColumnIds,
    hash_bucket_size: int | None,
    members: tuple[stacking.Member, ...] | None,
) -> adaptive.ColumnIds:
    return stacking.step_buckets(inputs, hash_bucket_size, members)


def _host_buckets(inputs: adaptive.ColumnIds, categorical: Any) -> np.ndarray:
    """The buckets of prepared ids, on the host: as prepared, or as the step
    computes them (int ids prepared with `int_buckets="device"`)."""
    if inputs.buckets is None:
        size, members = categorical.hash_bucket_size, categorical.members
        inputs = _step_buckets(inputs, size, members)
    return np.asarray(inputs.buckets)
