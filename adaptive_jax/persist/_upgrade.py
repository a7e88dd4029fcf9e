"""Checkpoints saved by an earlier version of the state, restored into this one.

What changed since, and what a restore does with it (each named in a
`CheckpointUpgradeWarning`):

- leaves added since (`ADDED`): the statistics' `nonfinite_rows`, the target's
  value (a fresh state's: 0); and, for a column whose migration is now
  "fitted" (the default since) but was saved under "deeprec", its evidence
  (`share/sums`: none yet, so promoted rows start as under "none" until the
  control rows give some) and the rows new ids start from (`default_values`,
  the target's initializer draw);
- the evidence's `share/squares` (the spread of the control rows, added
  since): without it the sums saved alone would read as no spread at all, so
  both start empty (the target's) and the evidence is gathered again;
- the admission sketch (`sketch/counts`, `sketch/held`), which was float32 rows
  as wide as the capacity and is now uint8 rows sized from the expected ids:
  of another shape or dtype, it starts empty (the target's), so ids without a
  row earn their admission again; the rows they have are kept.

Any other difference between a checkpoint and its target is still an error.
"""

from __future__ import annotations

# Leaves added since the first format.
ADDED = ("stats/nonfinite_rows", "share/sums", "default_values")
SKETCH = ("sketch/counts", "sketch/held")
SQUARES = "share/squares"
EVIDENCE = ("share/sums", SQUARES)


class CheckpointUpgradeWarning(UserWarning):
    """A checkpoint of an earlier version was restored: some leaves start from
    the target's values; the message names them."""


def _is(path: str, suffixes: tuple[str, ...]) -> bool:
    return any(path == s or path.endswith("/" + s) for s in suffixes)


def from_target(saved: list[dict], target: list[dict]) -> set[str]:
    """The paths of target leaves to take from the target rather than the
    checkpoint: those added since, sketches of the old shape (both of a
    column's sketch leaves, so that they agree) and evidence saved without its
    squares (both leaves)."""
    saved_leaves = {leaf["path"]: leaf for leaf in saved}
    kept = set()
    for leaf in target:
        path, old = leaf["path"], saved_leaves.get(leaf["path"])
        if old is None and _is(path, ADDED):
            kept.add(path)
        elif old is None and _is(path, (SQUARES,)):
            prefix = path[: -len(SQUARES)]
            kept |= {prefix + name for name in EVIDENCE}
        elif (
            old is not None
            and _is(path, SKETCH)
            and (old["shape"], old["dtype"]) != (leaf["shape"], leaf["dtype"])
        ):
            prefix = path.rsplit("/", 1)[0]
            kept |= {f"{prefix}/{name.split('/')[-1]}" for name in SKETCH}
    return kept


def without(leaves: list[dict], paths: set[str]) -> list[dict]:
    """The manifest `leaves` but those at `paths`."""
    return [leaf for leaf in leaves if leaf["path"] not in paths]
