"""Training state to disk and to serving: checkpoints and exports.

It may import every layer below it (`ids`, `table`, `optim`, `column`,
`parallel`) and `serving`, whose format an export is.

- `checkpoint`: orbax checkpoints of the embedding state with a manifest,
  checked on restore (the files' digests first, `_digests`; a state of an
  earlier version upgraded, `_upgrade`), and relayout onto another partition
  count (`_relayout`);
- `export`: the serving export of a trained state (live rows only, no
  optimizer state), deltas since an export, and the size report.
"""
