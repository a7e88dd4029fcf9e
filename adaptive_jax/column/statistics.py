"""What a column's tables are doing, from counters kept in its state.

DeepRec gives no figures on its embedding variables. Here each step updates a few
counters (O(1) beyond the step's own work), and `summary` reads them with no pass
over the table, cheap enough to log every step: live rows, capacity, load, the
lookups each store served in the last step and in total, promotions into the
dynamic table, admissions the filter refused, overflows (ids a full table turned
away to their buckets), evictions by reason and the mean age at eviction, the
number of distinct ids seen (a HyperLogLog of 4,096 registers, standard error
1.6%), and the table rows whose update was skipped because it was not finite.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import _numerics
from adaptive_jax import ids as ids_lib
from adaptive_jax.column import _share
from adaptive_jax.ids import _device_hash

REASONS = ("steps", "l2", "pressure")  # the `reason` of each eviction policy
HLL_BITS = 12  # 2**12 registers
_HLL_SEED = 0x411
STORES = ("static", "dynamic", "default")  # default: a plain dynamic column's
#   value for ids that have no row (not admitted, or no room)


@struct.dataclass
class ColumnStats:
    """Counters of one column.

    Attributes:
      last_served: `[3] int32`, ids served by each of `STORES` in the last step.
      total_served: `[3, 2] uint32`, the same since creation, as 64-bit counters.
      refused: `[] int32`, id occurrences the admission filter kept out
        (saturating).
      evictions: `[3] int32`, rows evicted for each of `REASONS` (saturating).
      evicted_age: `[] float32`, the mean `step - last_step` of evicted rows.
      distinct: `[4096] int32`, HyperLogLog registers of the ids seen.
      exchange_overflows: `[] int32`, ids of a partitioned column that found
        their partition's exchange buffer full and were served by their static
        bucket (or the default value) instead (saturating).
      split_overflows: `[] int32`, distinct buckets of a static table split by
        rows that did not fit their exchange buffers, so that their step took
        the buffers of every entry (nothing lost; saturating).
      nonfinite_rows: `[] int32`, table rows (buckets or dynamic rows) whose
        update was not finite (a NaN or inf gradient, or an overflow) and was
        skipped: the row kept its value and slots (saturating).
    """

    last_served: jax.Array
    total_served: jax.Array
    refused: jax.Array
    evictions: jax.Array
    evicted_age: jax.Array
    distinct: jax.Array
    exchange_overflows: jax.Array
    split_overflows: jax.Array
    nonfinite_rows: jax.Array

    @classmethod
    def create(cls) -> ColumnStats:
        return cls(
            last_served=jnp.zeros((len(STORES),), jnp.int32),
            total_served=jnp.zeros((len(STORES), 2), jnp.uint32),
            refused=jnp.zeros([], jnp.int32),
            evictions=jnp.zeros((len(REASONS),), jnp.int32),
            evicted_age=jnp.zeros([], jnp.float32),
            distinct=jnp.zeros((2**HLL_BITS,), jnp.int32),
            exchange_overflows=jnp.zeros([], jnp.int32),
            split_overflows=jnp.zeros([], jnp.int32),
            nonfinite_rows=jnp.zeros([], jnp.int32),
        )


def _observe(registers: jax.Array, ids: ids_lib.Ids, valid: jax.Array) -> jax.Array:
    """HyperLogLog: each id sets its register to the most leading zeros seen."""
    h = _device_hash.hash32(ids, _HLL_SEED)
    register = (h >> (32 - HLL_BITS)).astype(jnp.int32)
    rest = (h << HLL_BITS) | jnp.uint32(1 << (HLL_BITS - 1))  # caps the rank
    rank = jax.lax.clz(rest).astype(jnp.int32) + 1
    at = jnp.where(valid, register, registers.shape[0])
    return registers.at[at].max(rank, mode="drop")


def distinct_ids(registers) -> float:
    """The HyperLogLog estimate of distinct ids, with linear counting for few."""
    registers = np.asarray(registers, np.int64)  # on the host: no op per register
    m = registers.size
    raw = 0.7213 / (1 + 1.079 / m) * m * m / float(np.sum(2.0**-registers))
    empty = int(np.sum(registers == 0))
    if raw <= 2.5 * m and empty:
        return m * math.log(m / empty)
    return raw


def record_lookup(
    stats: ColumnStats,
    served: tuple[jax.Array, jax.Array, jax.Array],
    refused: jax.Array,
    ids: ids_lib.Ids,
    *,
    axis_name: str | None = None,
    exchange_overflows: jax.Array | None = None,
    split_overflows: jax.Array | None = None,
) -> ColumnStats:
    """Counts a step's lookups: `served` masks per store, refused admissions,
    the ids seen, (partitioned columns) the exchange's overflows, and (a
    static table split by rows) the mesh's `split_overflows`. Under
    `shard_map`, `axis_name` combines the devices' counts, so that the
    statistics stay the same on every device."""

    def total(count: jax.Array) -> jax.Array:
        return count if axis_name is None else jax.lax.psum(count, axis_name)

    valid = served[0] | served[1] | served[2]
    counts = total(jnp.stack([jnp.sum(mask, dtype=jnp.int32) for mask in served]))
    totals = jnp.stack(
        [
            _numerics.wide_add(stats.total_served[i], counts[i])
            for i in range(len(STORES))
        ]
    )
    distinct = _observe(stats.distinct, ids, valid)
    if axis_name is not None:
        distinct = jax.lax.pmax(distinct, axis_name)
    overflows = stats.exchange_overflows
    if exchange_overflows is not None:
        overflows = _numerics.saturating_add(
            overflows, total(jnp.sum(exchange_overflows, dtype=jnp.int32))
        )
    split = stats.split_overflows
    if split_overflows is not None:  # already summed over the mesh
        split = _numerics.saturating_add(split, split_overflows)
    return stats.replace(
        split_overflows=split,
        last_served=counts,
        total_served=totals,
        refused=_numerics.saturating_add(
            stats.refused, total(jnp.sum(refused, dtype=jnp.int32))
        ),
        distinct=distinct,
        exchange_overflows=overflows,
    )


def record_nonfinite(
    stats: ColumnStats, rows: jax.Array, axis_name: str | None = None
) -> ColumnStats:
    """Counts table rows whose update was skipped, not being finite; under
    `shard_map`, `axis_name` sums the devices' (each updated rows of its own)."""
    if axis_name is not None:
        rows = jax.lax.psum(rows, axis_name)
    return stats.replace(
        nonfinite_rows=_numerics.saturating_add(stats.nonfinite_rows, rows)
    )


def record_evictions(
    stats: ColumnStats, counts: dict[str, jax.Array], age_sum: jax.Array
) -> ColumnStats:
    """Counts a pass's evictions: rows per reason, and the sum of their ages."""
    before = jnp.sum(stats.evictions).astype(jnp.float32)
    evictions = stats.evictions
    for reason, count in counts.items():
        i = REASONS.index(reason)
        evictions = evictions.at[i].set(_numerics.saturating_add(evictions[i], count))
    now = sum(counts.values()).astype(jnp.float32)
    mean = (stats.evicted_age * before + age_sum) / jnp.maximum(before + now, 1.0)
    return stats.replace(evictions=evictions, evicted_age=mean)


def summary(state) -> dict[str, int | float]:
    """The statistics of a column's state (`adaptive.ColumnState`), on the host.

    Keys: `live_rows`, `capacity`, `load`, `promotions` (keys given a dynamic
    row), `overflows` (id occurrences a full table turned away), for a column
    with a dynamic table; `served_<store>_last` and `served_<store>_total` for
    each of `STORES`; `refused_admissions`; `evicted_<reason>` for each of
    `REASONS`; `mean_age_at_eviction` (in steps); `distinct_ids`;
    `exchange_overflows`; `split_overflows`; `nonfinite_rows` (table rows whose
    update was not finite, skipped); with migration "fitted",
    `migration_share` and `migration_evidence`, per feature (a stacked column's
    members in order): the share of its bucket a promoted row starts from, and
    the control ids it was measured on (promoted so far). A partitioned
    table's figures are its partitions' sums.
    """
    stats, dynamic = jax.device_get((state.stats, state.dynamic))
    out: dict[str, int | float] = {}
    if dynamic is not None:
        table = dynamic.table
        partitions = np.asarray(table.num_free).size  # 1 without partitions
        capacity = table.row_keys.shape[-2] * partitions
        live = capacity - int(np.sum(table.num_free))
        out |= {
            "live_rows": live,
            "capacity": capacity,
            "load": live / capacity,
            "promotions": int(np.sum(table.inserts)),
            "overflows": int(np.sum(table.overflows)),
        }
    for i, store in enumerate(STORES):
        out[f"served_{store}_last"] = int(stats.last_served[i])
        out[f"served_{store}_total"] = _numerics.wide_value(stats.total_served[i])
    out["refused_admissions"] = int(stats.refused)
    for i, reason in enumerate(REASONS):
        out[f"evicted_{reason}"] = int(stats.evictions[i])
    out["mean_age_at_eviction"] = float(stats.evicted_age)
    out["distinct_ids"] = round(distinct_ids(stats.distinct))
    out["exchange_overflows"] = int(stats.exchange_overflows)
    out["split_overflows"] = int(stats.split_overflows)
    out["nonfinite_rows"] = int(stats.nonfinite_rows)
    share = getattr(state, "share", None)
    if share is not None:
        out["migration_share"] = tuple(float(x) for x in _share.shares(share))
        out["migration_evidence"] = tuple(int(x) for x in np.asarray(share.sums)[:, 3])
    return out
