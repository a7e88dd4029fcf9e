"""The state of one embedding column, and what its lookup hands to its update.

A column holds a static table (`StaticTable`: buckets, their slots, when each
was last trained), a dynamic one (`ev.EmbeddingVariable`), or both, with the
default values of a plain dynamic column, the admission counts, the
statistics and its step (`ColumnState`). Arrays only: the column's settings
live in its `feature_column.CategoricalColumn`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from adaptive_jax.column import _share, statistics
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.table import _sketch


@struct.dataclass
class StaticTable:
    """A hash-bucket table and its optimizer slots, `[num_buckets, dim]` each,
    and the step each bucket was last trained (`[num_buckets] int32`, -1 for
    never): what a delta export sends."""

    values: jax.Array
    slots: Any
    last_step: jax.Array

    @classmethod
    def create(cls, values: jax.Array, optimizer: Any) -> StaticTable:
        never = jnp.full((values.shape[0],), -1, jnp.int32)
        return cls(values, optimizer.init_slots(values), never)


@struct.dataclass
class ColumnState:
    """All the state of one embedding column.

    Attributes:
      static: the `StaticTable`, or None for a plain dynamic column.
      dynamic: the `ev.EmbeddingVariable`, or None for a plain static column.
      default_values: `[default_value_dim, dim]` starting values of new keys of
        a plain dynamic column (DeepRec's default-value matrix), or None.
      sketch: the counts of ids without a row, with an admission filter; else
        None.
      stats: the column's `statistics.ColumnStats`.
      step: `[] int32`, training steps taken; the learning-rate schedules' count.
      share: with migration "fitted", the evidence of how much of its bucket
        a promoted row holds (`_share.ShareEvidence`); else None.
    """

    static: StaticTable | None
    dynamic: ev_lib.EmbeddingVariable | None
    default_values: jax.Array | None
    sketch: _sketch.Sketch | None
    stats: statistics.ColumnStats
    step: jax.Array
    share: _share.ShareEvidence | None = None


class Residuals(NamedTuple):
    """What `lookup` hands to `apply_gradients`: which row served each id."""

    static_rows: jax.Array  # [n] int32, bucket; num_buckets where not static
    dynamic_rows: jax.Array  # [n] int32, row; capacity where not dynamic
    segments: jax.Array  # [n] int32, the example of each id
    scale: jax.Array  # [n] float32, the id's factor in its example's embedding
    # A partitioned column's: dynamic_rows are [partitions here, entries received]
    # on the owner, and each entry's slot in the exchange (none: P * limit).
    exchange_slots: jax.Array | None = None
    # [batch_size, 0] (no bytes): the shape says how many examples the lookup
    # served, so that the update checks its gradient's rows when it is traced,
    # on one device or split over a mesh. None: not checked.
    examples: jax.Array | None = None


def examples_of(batch_size: int) -> jax.Array:
    """`Residuals.examples` for a batch of `batch_size` examples."""
    return jnp.zeros((batch_size, 0), jnp.float32)


def with_l1_mode(optimizer: Any, l1_mode: str) -> Any:
    """The optimizer with the given L1 mode, if it has one (FTRL does)."""
    if hasattr(optimizer, "l1_mode"):
        return dataclasses.replace(optimizer, l1_mode=l1_mode)
    return optimizer
