"""Eviction: a pure, jittable pass that takes rows back from a dynamic table.

DeepRec evicts only when it saves a checkpoint. Here `evict` is a function of the
column's state that a training loop calls every N steps (or `maybe_evict`, inside
the jitted step, on a schedule), and that saving may call. An evicted id falls
back to its static bucket (or, in a plain dynamic column, to the default value
until it is admitted again); its row's value, optimizer slots and counters are
reset and the row goes back on the free list, so the next id given it inherits
nothing. A pass costs O(capacity) to choose the rows, O(rows x dim) to reset
them. The statistics count evictions by reason and their mean age.

An id evicted from an adaptive column with an admission filter keeps its count
in the sketch, so it is admitted again at its next occurrence: it had earned it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptive_jax import _numerics
from adaptive_jax import table as table_lib
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.column import statistics
from adaptive_jax.column.options import EvictionPolicy, RowState


def evict_rows(
    dynamic: ev_lib.EmbeddingVariable,
    policies: tuple[EvictionPolicy, ...],
    fresh_slots: Any,
) -> tuple[ev_lib.EmbeddingVariable, dict[str, jax.Array], jax.Array]:
    """Evicts the rows of an embedding variable that any of `policies` chooses.

    Returns:
      `(dynamic, counts, age_sum)`: the variable, the rows evicted per reason,
      and the sum of their ages (`step - last_step`), for the statistics.
    """
    table = dynamic.table

    def choose(table: table_lib.DynamicTable, values: jax.Array):
        """The rows to evict, the count per reason, the sum of their ages."""
        live = table_lib.live_rows(table)
        rows = RowState(table.step, table.last_step, table.freq, values, live)
        remaining, counts = live, {}
        for policy in policies:
            chosen = policy.evict(rows._replace(live=remaining)) & remaining
            count = jnp.sum(chosen, dtype=jnp.int32)
            counts[policy.reason] = counts.get(policy.reason, 0) + count
            remaining = remaining & ~chosen
        dead = live & ~remaining
        ages = jnp.maximum(table.step - table.last_step, 0).astype(jnp.float32)
        return dead, counts, jnp.sum(jnp.where(dead, ages, 0.0))

    with jax.named_scope("aj.evict"):
        # Chosen into buffers of their own (see `materialized`), so that the
        # resets below update the table in place.
        dead, counts, age_sum = _numerics.materialized(choose, table, dynamic.values)
        dynamic = ev_lib.reset_rows(dynamic, dead, fresh_slots)
    return dynamic, counts, age_sum


def evict(state: Any, policies: tuple[EvictionPolicy, ...], fresh_slots: Any) -> Any:
    """Evicts the rows that any of `policies` chooses, in order. Jittable.

    Args:
      state: an `adaptive.ColumnState` with a dynamic table; donate it under jit.
      policies: the eviction policies; a row counts for the first that evicts it.
      fresh_slots: the optimizer's slots of a fresh row, each `[dim]`.

    Returns:
      The state with the rows evicted.
    """
    if state.dynamic is None or not policies:
        return state
    dynamic, counts, age_sum = evict_rows(state.dynamic, policies, fresh_slots)
    stats = statistics.record_evictions(state.stats, counts, age_sum)
    return state.replace(dynamic=dynamic, stats=stats)
