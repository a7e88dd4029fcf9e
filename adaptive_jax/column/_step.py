"""What a column's step needs besides its state: its options, and where it runs.

Both are frozen, hashable dataclasses, static under jit, so that one column's
lookup and update (`adaptive`, or `parallel.partitioned` for a partitioned
dynamic table) take them whole instead of a list of keyword arguments each;
`feature_column` builds them from a column and a layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How a column's lookup and update treat its ids.

    Attributes:
      combiner: "sum", "mean" or "sqrtn", over the ids of an example.
      static_optimizer: the sparse optimizer spec of the static table
        (TensorFlow's per-coordinate L1).
      dynamic_optimizer: the spec of the dynamic rows (their slots; DeepRec's
        row-wise L1 by default).
      migration: how a promoted row starts (`_migration.MIGRATIONS`).
      admission: the admission filter (`options.AdmissionFilter`), or None.
      no_permission_value: what a plain dynamic column gives an id without a
        row (not admitted yet, or no room).
      feature_salts: per feature the column embeds (a stacked column's
        members, or one), the salt XOR-ed into its keys (0 for a plain column):
        migration "fitted" measures its share per feature, and picks its
        control ids by their unsalted keys, as it would in a column apart.
      inserts: False for an evaluation: the lookup admits and inserts
        nothing, so an id without a row reads its bucket (or
        `no_permission_value`), as it does in a serving export.
    """

    combiner: str = "mean"
    static_optimizer: Any = None
    dynamic_optimizer: Any = None
    migration: str = "deeprec"
    admission: Any = None
    no_permission_value: float = 0.0
    feature_salts: tuple[int, ...] = (0,)
    inserts: bool = True


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a column's step runs: on one device (the default), or inside
    `shard_map` over a mesh axis.

    Attributes:
      axis_name: the mesh axis, or None on one device.
      split_static: the static table is split by rows over the axis: buckets
        are read from, and train on, their owners.
      static_limit: a replicated static table's update gathers this many
        entries per device when every device has no more (see
        `_update.update_static`); None for all.
      exchange_limit: a partitioned dynamic table's exchange buffer, entries
        per (source device, partition); None for the local batch's size.
      split_limit: a split static table's exchange buffers, distinct buckets
        per (source device, owner) (see `static_split`); None for every entry.
    """

    axis_name: str | None = None
    split_static: bool = False
    static_limit: int | None = None
    exchange_limit: int | None = None
    split_limit: int | None = None


ONE_DEVICE = Placement()
