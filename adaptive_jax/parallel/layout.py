"""`Layout`: where an embedding state lives on a device mesh, and the `shard_map`
of the feature-column functions' per-device bodies (see `sharding`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from adaptive_jax import feature_column as fc
from adaptive_jax.column import adaptive, partitioned


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh axis that splits the batch and the partitions.

    Attributes:
      mesh: the device mesh (`jax.sharding.Mesh`); other axes hold replicas.
      axis: the name of the mesh axis that splits the batch and the partitions.
      limits: exchange buffer entries per (source device, partition), by
        embedding-column name (`{"user_embedding": 4096}`); a device's repeats
        of a key take one entry. A column without one gets its local batch's
        size (no overflow possible, the most bytes).
      static_limits: entries per device in the all-gather of a replicated
        static table's update, by embedding-column name: a device's static
        entries, compacted, when no device has more; else every entry (the
        whole mesh decides together). `suggest_static_limits` sizes them.
      split_static: the embedding columns whose static table is split by rows
        over the axis (`("user_embedding",)`), or True for every static table;
        the others are replicated on every device. Split a table that is large
        beside a device's memory; a small one costs less replicated.
      split_static_limits: a split static table's exchange buffers, distinct
        buckets per (source device, owner), by embedding-column name; a step
        in which some device has more takes buffers of every entry (nothing
        lost). `suggest_split_limits` sizes them. None: buffers of every entry.

    Raises:
      ValueError: an axis not in the mesh, devices of different kinds, a limit
        below 1, or a `split_static` that is not True, False or names (each
        named).
    """

    mesh: Mesh
    axis: str = "data"
    limits: Mapping[str, int] | tuple = ()
    static_limits: Mapping[str, int] | tuple = ()
    split_static: bool | Collection[str] = ()
    split_static_limits: Mapping[str, int] | tuple = ()

    def __post_init__(self):
        if self.axis not in self.mesh.axis_names:
            raise ValueError(
                f"Layout: axis '{self.axis}' is not an axis of the mesh "
                f"{self.mesh.axis_names}"
            )
        kinds = {device.platform for device in self.mesh.devices.flat}
        if len(kinds) > 1:
            raise ValueError(f"Layout: the mesh mixes devices of kinds {sorted(kinds)}")
        for option in ("limits", "static_limits", "split_static_limits"):
            limits = dict(getattr(self, option))
            for name, limit in limits.items():
                if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                    raise ValueError(f"Layout: {option}['{name}'] must be an int >= 1")
            object.__setattr__(self, option, tuple(sorted(limits.items())))
        split = self.split_static
        if not isinstance(split, bool):
            if isinstance(split, str) or not all(isinstance(n, str) for n in split):
                raise ValueError(
                    "Layout: split_static must be True, False or a collection of "
                    f"embedding column names, got {split!r}"
                )
            object.__setattr__(self, "split_static", tuple(sorted(set(split))))

    @property
    def devices(self) -> int:
        """Devices along the axis."""
        return self.mesh.shape[self.axis]

    def limit(self, name: str) -> int | None:
        return dict(self.limits).get(name)

    def static_limit(self, name: str) -> int | None:
        return dict(self.static_limits).get(name)

    def split_limit(self, name: str) -> int | None:
        return dict(self.split_static_limits).get(name)

    def _split_names(self) -> tuple[str, ...]:
        split = self.split_static
        return () if isinstance(split, bool) else split

    def splits_static(self, name: str) -> bool:
        """Whether the static table of embedding column `name`, if it has one,
        is split by rows over the axis."""
        return self.split_static is True or name in self._split_names()

    def check(self, feature_columns: Sequence[fc.EmbeddingColumn]) -> None:
        """Raises a ValueError naming the column and the axis when a column's
        dynamic table, or its static table in `split_static`, cannot be split
        over the axis."""
        for column in feature_columns:
            categorical = column.categorical_column
            buckets = categorical.hash_bucket_size
            if self.splits_static(column.name) and buckets is not None:
                if buckets % self.devices:
                    raise ValueError(
                        f"column '{categorical.key}': mesh axis '{self.axis}' has "
                        f"{self.devices} devices, which does not divide its "
                        f"hash_bucket_size {buckets} (split_static)"
                    )
            elif column.name in self._split_names():
                raise ValueError(
                    f"Layout: split_static names '{column.name}', which has no "
                    "static table (hash_bucket_size)"
                )
            if categorical.ev_option is None:
                continue
            parts = categorical.partition_num
            if parts is None and self.devices > 1:
                raise ValueError(
                    f"column '{categorical.key}': a dynamic table on mesh axis "
                    f"'{self.axis}' ({self.devices} devices) needs partition_num, "
                    f"a multiple of {self.devices}"
                )
            if parts is not None and parts % self.devices:
                raise ValueError(
                    f"column '{categorical.key}': mesh axis '{self.axis}' has "
                    f"{self.devices} devices, which does not divide its "
                    f"partition_num {parts}"
                )

    def state_specs(self, state: Mapping[str, adaptive.ColumnState]) -> dict:
        """The `PartitionSpec` of each leaf of an embedding state: partitions
        and the static tables of `split_static` split over the axis, everything
        else replicated."""
        split, whole = P(self.axis), P()
        specs = {}
        for name, column_state in state.items():
            spec = jax.tree.map(lambda _: whole, column_state)
            if partitioned.is_partitioned(column_state.dynamic):
                spec = spec.replace(
                    dynamic=jax.tree.map(lambda _: split, column_state.dynamic),
                    sketch=jax.tree.map(lambda _: split, column_state.sketch),
                )
            if column_state.static is not None and self.splits_static(name):
                spec = spec.replace(
                    static=jax.tree.map(lambda _: split, column_state.static)
                )
            specs[name] = spec
        return specs

    def place(
        self,
        state: Mapping[str, adaptive.ColumnState],
        feature_columns: Sequence[fc.EmbeddingColumn],
    ) -> dict[str, adaptive.ColumnState]:
        """The state on the mesh: each leaf sharded by `state_specs`.

        Raises:
          ValueError: as `check`, a `split_static` name that is not a column
            of the state, or a state not made for the columns
            (`feature_column.check_state`).
        """
        self.check(feature_columns)
        fc.check_state(state, fc.ordered(feature_columns))
        unknown = set(self._split_names()) - set(state)
        if unknown:
            raise ValueError(
                f"Layout: split_static names {sorted(unknown)}, not embedding "
                f"columns of the state {sorted(state)}"
            )
        shardings = jax.tree.map(
            lambda spec: NamedSharding(self.mesh, spec), self.state_specs(state)
        )
        return jax.device_put(dict(state), shardings)

    def run(
        self,
        body: Callable,
        args: tuple,
        in_specs: tuple,
        out_specs: Any,
    ) -> Any:
        """`body(*args, axis_name=axis)` on every device, in `jax.shard_map`."""

        def per_device(*local):
            return body(*local, axis_name=self.axis)

        return jax.shard_map(
            per_device,
            mesh=self.mesh,
            in_specs=in_specs,
            out_specs=out_specs,
            check_vma=False,
        )(*args)

    def split(self) -> P:
        return P(self.axis)
