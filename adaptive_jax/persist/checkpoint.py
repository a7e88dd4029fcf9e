"""Checkpoints of a whole training state, with orbax, that resume exactly.

`Checkpointer(directory)` saves any pytree of arrays: the embedding state (both
tables, index, free list, counters, sketch, optimizer slots), the dense model
and its optimizer state, the step, PRNG keys. orbax writes each checkpoint
atomically (to a temporary directory, renamed when complete), so a save
interrupted at any point leaves the previous checkpoint whole; the last
`max_to_keep` are kept; `async_save=True` writes in the background.

Beside the arrays each checkpoint holds a manifest: every leaf's path, shape,
dtype and a checksum (BLAKE2b) of its bytes. Restoring checks the manifest
against the target (another dimension, other column names: an error that names
the leaf) and the checksums against the bytes read (a truncated or corrupted
file: an error that names the leaf), before anything is returned.

`relayout(source, target)` moves an embedding state into another layout (another
capacity, another number of partitions, hence of devices): the live rows are
re-inserted, so lookups give the same results.

Example:
  >>> import tempfile, jax.numpy as jnp
  >>> with Checkpointer(tempfile.mkdtemp()) as checkpoints:
  ...     checkpoints.save(3, {"w": jnp.arange(4.0)})
  ...     restored = checkpoints.restore({"w": jnp.zeros(4)})
  >>> restored["w"].tolist()
  [0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from adaptive_jax import ids as ids_lib
from adaptive_jax import table as table_lib
from adaptive_jax.column import partitioned
from adaptive_jax.ids import _device_hash
from adaptive_jax.optim import set_rows
from adaptive_jax.serving._digest import checksum

FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, corrupted, or not of the target's
    structure; the message says which, and which leaf."""


def _path_name(path: tuple) -> str:
    return "/".join(
        str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path
    )


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(
        leaf.dtype, jax.dtypes.prng_key
    )


def _storable(tree: Any) -> Any:
    """PRNG keys as their key data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _manifest(tree: Any) -> list[dict]:
    """Path, shape, dtype and checksum of each leaf, on the host."""
    leaves = jax.tree_util.tree_flatten_with_path(_storable(tree))[0]
    host = jax.device_get([leaf for _, leaf in leaves])
    return [
        {
            "path": _path_name(path),
            "shape": list(np.shape(value)),
            "dtype": str(np.asarray(value).dtype),
            "checksum": checksum(np.asarray(value)),
        }
        for (path, _), value in zip(leaves, host, strict=True)
    ]


def _compare(saved: list[dict], target: list[dict], where: str) -> None:
    """Raises a CheckpointError that names what differs between two manifests."""
    saved_paths = {leaf["path"]: leaf for leaf in saved}
    target_paths = {leaf["path"]: leaf for leaf in target}
    only_saved = sorted(set(saved_paths) - set(target_paths))
    only_target = sorted(set(target_paths) - set(saved_paths))
    if only_saved or only_target:
        raise CheckpointError(
            f"{where} does not match the target's structure: leaves only in the "
            f"checkpoint: {only_saved[:5]}; only in the target: {only_target[:5]}"
        )
    for path, leaf in saved_paths.items():
        want = target_paths[path]
        for field in ("shape", "dtype"):
            if leaf[field] != want[field]:
                raise CheckpointError(
                    f"{where}: leaf '{path}' has {field} {leaf[field]} in the "
                    f"checkpoint, {want[field]} in the target"
                )


class Checkpointer:
    """Saves and restores training states in `directory`, one per step.

    Args:
      directory: where the checkpoints go (one sub-directory per step).
      max_to_keep: how many of the latest checkpoints to keep.
      async_save: if True, `save` returns once the arrays are copied to the host
        and writes them in the background; `wait` (or `close`) finishes.
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        max_to_keep: int = 3,
        async_save: bool = False,
    ):
        if max_to_keep < 1:
            raise ValueError(
                f"Checkpointer: max_to_keep must be >= 1, got {max_to_keep}"
            )
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any) -> None:
        """Saves `state` as the checkpoint of `step` (atomically)."""
        manifest = {"format": FORMAT, "leaves": _manifest(state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_storable(state)),
            manifest=ocp.args.JsonSave(manifest),
        )
        self._manager.save(step, args=args, force=True)

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def restore(self, target: Any, step: int | None = None) -> Any:
        """The state saved at `step` (the latest by default), in `target`'s structure.

        Args:
          target: a state of the same structure, shapes and dtypes (a fresh
            `init`, say); its values are not used. PRNG keys come back as keys
            of the target's kind.
          step: which checkpoint; None for the latest.

        Raises:
          CheckpointError: no checkpoint, a manifest that differs from the target,
            unreadable files, or a checksum that does not match; the state passed
            in is untouched.
        """
        self.wait()
        step = self.latest_step() if step is None else step
        where = f"checkpoint of step {step} in {self.directory}"
        if step is None or step not in self.steps():
            raise CheckpointError(f"no checkpoint of step {step} in {self.directory}")
        try:
            manifest = self._manager.restore(
                step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
            ).manifest
        except Exception as error:  # orbax raises many kinds
            raise CheckpointError(
                f"{where}: its manifest cannot be read ({error})"
            ) from error
        storable = _storable(target)
        expected = [
            {"path": leaf["path"], "shape": leaf["shape"], "dtype": leaf["dtype"]}
            for leaf in _manifest_shapes(storable)
        ]
        _compare(manifest["leaves"], expected, where)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            ).state
        except Exception as error:
            raise CheckpointError(
                f"{where}: its arrays cannot be read ({error})"
            ) from error
        for saved, now in zip(manifest["leaves"], _manifest(restored), strict=True):
            if saved["checksum"] != now["checksum"]:
                raise CheckpointError(
                    f"{where}: leaf '{saved['path']}' is corrupted (its checksum does "
                    "not match the one saved)"
                )
        return jax.tree.map(
            lambda t, r: (
                jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
                if _is_key(t)
                else r
            ),
            target,
            restored,
        )

    def wait(self) -> None:
        """Waits for a background save to finish."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _manifest_shapes(tree: Any) -> list[dict]:
    """Path, shape and dtype of each leaf, without reading values."""
    return [
        {
            "path": _path_name(path),
            "shape": list(np.shape(leaf)),
            "dtype": str(jnp.dtype(leaf.dtype)),
        }
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


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
