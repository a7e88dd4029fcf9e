"""The dynamic table: a fixed-capacity map from int64 keys to rows, in JAX.

Knows nothing of embeddings: keys come and go inside `jax.jit` at O(batch)
cost, with a free list of rows, per-row counters and event counters
(`DynamicTable` and its functions: this package's own names). It may import
`adaptive_jax.ids` and `adaptive_jax._numerics` only.

- `_table`: the state and lookup; `_insert`: insertion; `_remove`: removal;
- `_index`: the key -> row index (bucketed, `WAYS` slots a bucket);
- `_chunks`: large key arrays in fixed-size chunks (bounded scratch memory);
- `_sketch`: fixed-size counts of keys that have no row yet (a count-min
  sketch with conservative update, or a counting Bloom filter, sized from
  the keys expected), for admission;
- `_dedup`: each entry's first occurrence of its key in a batch, by hashing
  (no sort), for the sparse update and the exchange.
"""

from adaptive_jax.table._insert import insert_absent as insert_absent
from adaptive_jax.table._insert import insert_absent_with as insert_absent_with
from adaptive_jax.table._insert import lookup_or_insert as lookup_or_insert
from adaptive_jax.table._remove import release as release
from adaptive_jax.table._remove import remove as remove
from adaptive_jax.table._remove import remove_rows as remove_rows
from adaptive_jax.table._table import EMPTY as EMPTY
from adaptive_jax.table._table import MAX_CAPACITY as MAX_CAPACITY
from adaptive_jax.table._table import DynamicTable as DynamicTable
from adaptive_jax.table._table import Found as Found
from adaptive_jax.table._table import advance_step as advance_step
from adaptive_jax.table._table import find as find
from adaptive_jax.table._table import live_rows as live_rows
from adaptive_jax.table._table import lookup as lookup
from adaptive_jax.table._table import num_live as num_live
from adaptive_jax.table._table import set_frequency as set_frequency

__all__ = (
    "EMPTY",
    "MAX_CAPACITY",
    "DynamicTable",
    "Found",
    "advance_step",
    "find",
    "insert_absent",
    "insert_absent_with",
    "live_rows",
    "lookup",
    "lookup_or_insert",
    "num_live",
    "release",
    "remove",
    "remove_rows",
    "set_frequency",
)
