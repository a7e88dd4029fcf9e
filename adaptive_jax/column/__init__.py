"""The embedding column: static buckets, dynamic rows, migration, policies.

DeepRec's Adaptive Embedding as pure functions over one column's state. It
may import `ids`, `table`, `optim` and `_numerics`; nothing above
(`feature_column`, `parallel`, `serving`, `persist`, `nn`).

- `options`: `EmbeddingVariableOption` and its parts (initializer option,
  admission filters, eviction policies);
- `initializers`, `combiners` (sum, mean, sqrtn over an example's ids);
- `ev`: the dynamic table with value rows and optimizer slots;
- `statistics`: counters of what each lookup did, kept in the state;
- `eviction`: the policies applied to a column's dynamic table;
- `adaptive`: a column's lookup (routing, admission, serving each id from its
  store), re-exporting its state (`_state`), migration (`_migration`), step
  options and placement (`_step`) and sparse update (`_update`);
- `partitioned`: the same for a dynamic table split into partitions by a
  stable hash of the key, with an all-to-all under `shard_map` (a device's
  repeats of a key merged first, `table._dedup`);
- `static_split`, `_exchange`: a static table split by rows over a mesh axis,
  and the fixed-size buffers of an all-to-all (the column's step runs inside
  `shard_map` as it is);
- `stacking`: many features in one table, each with its own static segment
  (host side; `serving` uses it too).
"""
