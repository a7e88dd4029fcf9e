"""`relayout`: an embedding state moved into another layout (another dynamic
capacity, another number of partitions, hence of devices), with the same
lookups: the live rows are inserted anew where the target's layout puts them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import partitioned
from adaptive_jax.ids import _device_hash
from adaptive_jax.optim import set_rows


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, corrupted, or not of the target's
    structure; the message says which, and which leaf."""


_MOVE_CHUNK = 65_536


@jax.jit
def _move_rows(target: Any, source: Any, rows: jax.Array) -> Any:
    """Inserts the keys of `source` rows `rows` (-1: none) into `target`, with
    their values, slots and counters."""
    valid = rows >= 0
    at = jnp.maximum(rows, 0)
    stored = source.table.row_keys[at]
    keys = ids_lib.Ids(stored[:, 0], stored[:, 1])
    table, new_rows = table_lib.lookup_or_insert(target.table, keys, valid, valid=valid)
    put = jnp.where(valid, new_rows, target.capacity)
    table = table.replace(
        freq=table.freq.at[put].set(source.table.freq[at], mode="drop"),
        last_step=table.last_step.at[put].set(source.table.last_step[at], mode="drop"),
    )
    values = target.values.at[put].set(source.values[at], mode="drop")
    slots = set_rows(
        target.slots, put, type(source.slots)(*(s[at] for s in source.slots))
    )
    return target.replace(table=table, values=values, slots=slots)


def relayout(source: dict, target: dict) -> dict:
    """Moves an embedding state (`feature_column.init_state`'s dict) into the
    layout of `target`: another dynamic capacity, or another `partition_num`.
    Static tables, statistics and steps are copied; the live rows of each
    dynamic table are inserted anew into the partition that owns their key in
    the target, with their values, slots and counters, so that lookups give the
    same results. A sketch of another shape starts empty. On the host; place
    the result on a mesh with `sharding.Layout.place`.

    Raises:
      CheckpointError: other columns or static tables, or a target partition
        too small for the live rows it gets.
    """
    if set(source) != set(target):
        raise CheckpointError(
            f"relayout: the columns differ: {sorted(source)} and {sorted(target)}"
        )
    source = jax.tree.map(jnp.asarray, source)  # host arrays too
    moved = {}
    for name in source:
        src, dst = source[name], target[name]
        if (src.static is None) != (dst.static is None) or (
            src.static is not None
            and src.static.values.shape != dst.static.values.shape
        ):
            raise CheckpointError(f"relayout: column '{name}' has another static table")
        dst = dst.replace(
            static=src.static,
            stats=src.stats,
            step=src.step,
            share=dst.share if src.share is None else src.share,
        )
        if (
            src.default_values is not None
            and dst.default_values is not None
            and src.default_values.shape == dst.default_values.shape
        ):  # where new rows start from is part of the model
            dst = dst.replace(default_values=src.default_values)
        if (
            src.sketch is not None
            and dst.sketch is not None
            and (src.sketch.counts.shape == dst.sketch.counts.shape)
        ):
            dst = dst.replace(sketch=src.sketch)
        if src.dynamic is not None:
            dst = dst.replace(dynamic=_moved_dynamic(src.dynamic, dst.dynamic, name))
        moved[name] = dst
    return moved


def _parts(dynamic: Any) -> list[Any]:
    """The partitions of a dynamic table (one when it is not partitioned)."""
    if partitioned.is_partitioned(dynamic):
        return partitioned.partitions(dynamic)
    return [dynamic]


def _moved_dynamic(source: Any, target: Any, name: str) -> Any:
    """`source`'s live rows inserted into `target`, each into the partition
    of `target` that owns its key."""
    sources, targets = _parts(source), _parts(target)
    for t, part in enumerate(targets):
        for src in sources:
            rows = np.flatnonzero(np.asarray(table_lib.live_rows(src.table)))
            if len(targets) > 1:
                stored = np.asarray(src.table.row_keys)[rows]
                keys = ids_lib.Ids(jnp.asarray(stored[:, 0]), jnp.asarray(stored[:, 1]))
                owner = np.asarray(_device_hash.partition(keys, len(targets)))
                rows = rows[owner == t]
            part = _moved_rows(part, src, rows, name)
        targets[t] = part
    counters = [src.table for src in sources]
    totals = {
        field: sum(np.asarray(getattr(table, field)) for table in counters)
        for field in ("inserts", "removals", "overflows")
    }
    step = max(np.asarray(table.step) for table in counters)
    for t, part in enumerate(targets):  # the totals, kept in the first partition
        targets[t] = part.replace(
            table=part.table.replace(
                step=jnp.asarray(step),
                **{
                    field: jnp.asarray(total if t == 0 else np.zeros_like(total))
                    for field, total in totals.items()
                },
            )
        )
    if partitioned.is_partitioned(target):
        return partitioned.joined(targets)
    return targets[0]


def _moved_rows(target: Any, source: Any, rows: np.ndarray, name: str) -> Any:
    """`source`'s `rows` inserted into `target`, a chunk at a time."""
    live = int(np.asarray(table_lib.live_rows(target.table)).sum())
    if live + rows.size > target.capacity:
        raise CheckpointError(
            f"relayout: column '{name}' has {live + rows.size} live rows for a "
            f"partition of the target, more than its capacity {target.capacity}"
        )
    for start in range(0, rows.size, _MOVE_CHUNK):
        chunk = np.full(_MOVE_CHUNK, -1, np.int32)
        part = rows[start : start + _MOVE_CHUNK]
        chunk[: part.size] = part
        target = _move_rows(target, source, jnp.asarray(chunk))
    return target
