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
capacity now; other partitions and devices with sharding): the live rows are
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
from adaptive_jax._digest import checksum
from adaptive_jax.optim import set_rows

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
    table, new_rows, _ = table_lib.lookup_or_insert_new(
        target.table, keys, valid, valid=valid
    )
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
    layout of `target`: another dynamic capacity (and, with sharding, other
    partitions). Static tables, statistics and steps are copied; the live rows
    of each dynamic table are inserted anew, with their values, slots and
    counters, so that lookups give the same results. A sketch of another shape
    starts empty.

    Raises:
      CheckpointError: other columns or static tables, or a target too small for
        the live rows.
    """
    if set(source) != set(target):
        raise CheckpointError(
            f"relayout: the columns differ: {sorted(source)} and {sorted(target)}"
        )
    moved = {}
    for name in source:
        src, dst = source[name], target[name]
        if (src.static is None) != (dst.static is None) or (
            src.static is not None
            and src.static.values.shape != dst.static.values.shape
        ):
            raise CheckpointError(f"relayout: column '{name}' has another static table")
        dst = dst.replace(static=src.static, stats=src.stats, step=src.step)
        if (
            src.sketch is not None
            and dst.sketch is not None
            and (src.sketch.counts.shape == dst.sketch.counts.shape)
        ):
            dst = dst.replace(sketch=src.sketch)
        if src.dynamic is not None:
            live = np.flatnonzero(np.asarray(table_lib.live_rows(src.dynamic.table)))
            if live.size > dst.dynamic.capacity:
                raise CheckpointError(
                    f"relayout: column '{name}' has {live.size} live rows, more than "
                    f"the target's capacity {dst.dynamic.capacity}"
                )
            dynamic = dst.dynamic
            for start in range(0, live.size, _MOVE_CHUNK):
                chunk = np.full(_MOVE_CHUNK, -1, np.int32)
                part = live[start : start + _MOVE_CHUNK]
                chunk[: part.size] = part
                dynamic = _move_rows(dynamic, src.dynamic, jnp.asarray(chunk))
            old = src.dynamic.table
            table = dynamic.table.replace(
                step=old.step,
                inserts=old.inserts,
                removals=old.removals,
                overflows=old.overflows,
            )
            dst = dst.replace(dynamic=dynamic.replace(table=table))
        moved[name] = dst
    return moved
