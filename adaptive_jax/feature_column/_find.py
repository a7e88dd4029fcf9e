"""The columns' tables wherever a user holds them.

The feature-column functions take `init_state`'s dict, `{column name:
ColumnState}`. A Flax model holds that dict deeper: in a linen `TrainState`'s
`embeddings` (`{"Embed_0": {"state": {...}}}`), in linen variables
(`"embedding_state"`), in an NNX model's `Embed.tables`. `tables` finds them in
any pytree, by the name each column has in its dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from adaptive_jax.column import adaptive


def tables(tree: Any, caller: str) -> dict[str, adaptive.ColumnState]:
    """Every column's state in `tree`, by column name.

    Raises:
      ValueError: no column state in `tree`, or two of one name (two modules
        with a column of the same name), naming `caller` and where to look.
    """
    if isinstance(tree, Mapping) and all(
        isinstance(v, adaptive.ColumnState) for v in tree.values()
    ):
        return dict(tree)
    found: dict[str, adaptive.ColumnState] = {}
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, adaptive.ColumnState)
    )[0]
    for path, leaf in leaves:
        if not isinstance(leaf, adaptive.ColumnState):
            continue
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        name = str(names[-1]) if names else jax.tree_util.keystr(path)
        if name in found:
            raise ValueError(
                f"{caller}: two tables of column '{name}' (one at "
                f"{jax.tree_util.keystr(path)}); give it one module's tables, "
                "e.g. state.embeddings['Embed_0']['state']"
            )
        found[name] = leaf
    if not found:
        raise ValueError(
            f"{caller}: no column tables in the {type(tree).__name__} given: pass "
            "feature_column.init_state's dict, a linen aj.nn.TrainState (the "
            "tables are in state.embeddings[<Embed module>]['state']), linen "
            "variables, or an NNX model with aj.nnx.Embed modules"
        )
    return found
