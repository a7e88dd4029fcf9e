"""Checkpoints of a whole training state, with orbax, that resume exactly.

`Checkpointer(directory)` saves any pytree of arrays: the embedding state (both
tables, index, free list, counters, sketch, optimizer slots), the dense model
and its optimizer state, the step, PRNG keys. orbax writes each checkpoint
atomically (to a temporary directory, renamed when complete), so a save
interrupted at any point leaves the previous checkpoint whole; the last
`max_to_keep` are kept; `async_save=True` writes in the background. Once a
save is finished, the size and CRC-32 of its files are recorded (`_digests`),
and a restore checks them before orbax reads a byte: a damaged file is refused
by name, quietly (orbax, failing midway, prints a traceback per array still
being read).

Beside the arrays each checkpoint holds a manifest: every leaf's path, shape,
dtype and a checksum (BLAKE2b) of its bytes. Restoring checks the manifest
against the target (another dimension, other column names: an error that names
the leaf) and the checksums against the bytes read (a truncated or corrupted
file: an error that names the leaf), before anything is returned. A checkpoint
of an earlier version of the state restores, with a warning naming the leaves
that start from the target's values (`_upgrade`: counters added since, and an
admission sketch of the old shape).

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
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from adaptive_jax.persist import _digests, _upgrade
from adaptive_jax.persist._relayout import CheckpointError as CheckpointError
from adaptive_jax.persist._relayout import relayout as relayout
from adaptive_jax.persist._upgrade import (
    CheckpointUpgradeWarning as CheckpointUpgradeWarning,
)
from adaptive_jax.serving._digest import checksum

FORMAT = 1


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
        self._async = async_save
        self._unrecorded: list[int] = []  # saves whose file digests are to write

    def save(self, step: int, state: Any) -> None:
        """Saves `state` as the checkpoint of `step` (atomically)."""
        manifest = {"format": FORMAT, "leaves": _manifest(state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_storable(state)),
            manifest=ocp.args.JsonSave(manifest),
        )
        self.wait()  # the previous save's digests first
        self._manager.save(step, args=args, force=True)
        self._unrecorded.append(step)
        if not self._async:
            self.wait()

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
        damaged = _digests.problem(self.directory / str(step))
        if damaged is not None:
            raise CheckpointError(f"{where}: {damaged}")
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
        kept = _upgrade.from_target(manifest["leaves"], expected)
        saved = _upgrade.without(manifest["leaves"], kept)
        _compare(saved, _upgrade.without(expected, kept), where)
        try:
            if kept:
                restored = self._restore_upgraded(step, storable, kept)
            else:
                abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)),
                ).state
        except Exception as error:
            raise CheckpointError(
                f"{where}: its arrays cannot be read ({error})"
            ) from error
        now = {leaf["path"]: leaf for leaf in _manifest(restored)}
        for leaf in saved:
            if leaf["checksum"] != now[leaf["path"]]["checksum"]:
                raise CheckpointError(
                    f"{where}: leaf '{leaf['path']}' is corrupted (its checksum does "
                    "not match the one saved)"
                )
        if kept:
            warnings.warn(
                f"{where} was saved by an earlier version: {sorted(kept)} start from "
                "the target's values (counters added since at 0; an admission "
                "sketch of the old shape empty: ids without a row earn admission "
                "again)",
                _upgrade.CheckpointUpgradeWarning,
                stacklevel=2,
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

    def _restore_upgraded(self, step: int, storable: Any, kept: set[str]) -> Any:
        """The checkpoint's leaves in the structure it was saved in (from
        orbax's metadata), placed into the target's; the leaves at `kept` are
        the target's (see `_upgrade`)."""
        metadata = self._manager.item_metadata(step)["state"]
        tree = getattr(metadata, "tree", metadata)
        abstract = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
            tree,
            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
        )
        saved = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        ).state
        by_path = {
            _path_name(path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]
        }
        leaves, treedef = jax.tree_util.tree_flatten_with_path(storable)
        placed = []
        for path, leaf in leaves:
            name = _path_name(path)
            value = leaf if name in kept else by_path[name]
            if name not in kept and isinstance(leaf, jax.Array):
                value = jax.device_put(value, leaf.sharding)
            placed.append(value)
        return jax.tree_util.tree_unflatten(treedef, placed)

    def wait(self) -> None:
        """Waits for a background save to finish, and records its files'
        digests (see `_digests`)."""
        self._manager.wait_until_finished()
        for step in self._unrecorded:
            if step in self._manager.all_steps():
                _digests.write(self.directory / str(step))
        self._unrecorded = []

    def close(self) -> None:
        self.wait()
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
