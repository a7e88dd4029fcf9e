"""Over a device mesh: where each column's tables live, and a batch split over it.

The in-step pieces (a partitioned dynamic table and its all-to-all exchange,
a static table split by rows) belong to the column (`column.partitioned`,
`column.static_split`); this package places them on a mesh. It may import
every layer below it (`ids`, `table`, `optim`, `column`, `feature_column`).

- `layout`: `Layout` (mesh, axis, exchange limits, static limits, split
  static tables): the state's specs, placement, and the `shard_map` of a step;
- `sharding`: `prepare` for a mesh (this process's examples split over its
  devices), and the limits suggested from data (`suggest_limits`,
  `suggest_static_limits`); it re-exports `Layout`.
"""
