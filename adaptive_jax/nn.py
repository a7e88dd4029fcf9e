"""Flax (linen) face: embedding columns inside a Flax model, and its train step.

`Embed` wraps a set of embedding columns as a linen module. Its tables live in
the `"embedding_state"` collection, never in `"params"`, so `jax.grad` over the
params never sees a table and the dense optax optimizer never touches one.
`make_train_step` builds jax-tpu-embedding's step: `jax.value_and_grad` of the
loss with respect to (dense params, embedding activations), then the dense optax
optimizer on the params and the sparse optimizer on the tables, fed by the
gradient of the activations (`feature_column.apply_gradients`).

Why linen and not NNX: linen modules hold no state; the variables go into
`apply` and the changed ones come out, which is how the functional core already
works (state in, state out). The step is then a pure function of a
`TrainState` of arrays that jits with `donate_argnums`, so the tables update in
place. An NNX module would hold the tables as mutable attributes, changed in
place during the forward pass, and each jitted step would have to split and
merge them around the core's own state passing.

Where the lookup runs: inside the function given to `jax.value_and_grad`,
since it is part of the model, but nothing it computes depends on the
differentiated arguments, so JAX computes no tangent for it: no dense gradient
of a table ever exists. The activations reach the gradient through a zero
variable added to them (linen's `perturb`, in the `"embedding_activations"`
collection), and the new state and residuals leave through `has_aux`.

Example (a model and its training loop):
  >>> import jax, numpy as np, optax, flax.linen as nn
  >>> import adaptive_jax as aj
  >>> from adaptive_jax import feature_column as fc
  >>> option = aj.EmbeddingVariableOption(
  ...     capacity=64, filter_option=aj.CounterFilter(2))
  >>> item = fc.embedding_column(fc.categorical_column_with_adaptive_embedding(
  ...     "item", 32, dtype="int64", ev_option=option), dimension=4)
  >>> sparse_opt, tx = aj.optim.ftrl(0.5), optax.adagrad(0.1)
  >>> class CTR(nn.Module):
  ...     @nn.compact
  ...     def __call__(self, features):
  ...         x = aj.nn.Embed([item], sparse_opt)(features)
  ...         return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))[:, 0]
  >>> def loss_fn(logits, labels):
  ...     return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  >>> model, ids = CTR(), np.arange(16)[:, None] % 8
  >>> labels = (ids[:, 0] % 2).astype(np.float32)  # odd ids click
  >>> features = fc.prepare({"item": ids}, [item])  # on the host, outside jit
  >>> variables = jax.jit(model.init)(jax.random.key(0), features)
  >>> state = aj.nn.TrainState.create(variables, tx)
  >>> step = jax.jit(aj.nn.make_train_step(model.apply, loss_fn, tx), donate_argnums=0)
  >>> for _ in range(20):
  ...     state, metrics = step(state, features, labels)
  >>> bool(metrics["loss"] < 0.3)
  True
  >>> tables = state.embeddings["Embed_0"]["state"]  # the ids seen twice got rows
  >>> fc.summary(tables)["item_embedding"]["live_rows"]
  8
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct, traverse_util

from adaptive_jax import _numerics
from adaptive_jax import feature_column as fc
from adaptive_jax.column import adaptive

EMBEDDING_STATE = "embedding_state"
LOOKUPS = "embedding_lookups"
ACTIVATIONS = "embedding_activations"


@struct.dataclass
class Lookup:
    """What an `Embed` module's lookup hands to the sparse update (collection
    `"embedding_lookups"`): the residuals, and how to apply gradients to them."""

    residuals: dict[str, adaptive.Residuals]
    columns: tuple[fc.EmbeddingColumn, ...] = struct.field(pytree_node=False)
    optimizer: Any = struct.field(pytree_node=False)


def _check_features(features: Any, columns: Sequence[fc.EmbeddingColumn]) -> None:
    """Raises a ValueError naming the column whose prepared ids are missing."""
    if not isinstance(features, Mapping):
        raise ValueError(
            f"Embed takes a dict of prepared features, got {type(features).__name__}"
        )
    for column in columns:
        key = column.categorical_column.key
        if not isinstance(features.get(column.name), adaptive.ColumnIds):
            raise ValueError(
                f"Embed: column '{key}': feature '{column.name}' is missing from "
                f"the prepared features (they have {sorted(features)}); prepare "
                "the batch on the host with feature_column.prepare(features, columns)"
            )


class Embed(nn.Module):
    """The concatenated embeddings of a set of columns, `[batch, sum of dims]`.

    Takes `feature_column.prepare`'s output (a dict that may hold the ids of
    other columns too); prepare on the host, outside jit. Call each `Embed` once
    per forward pass.

    Collections:
      `"embedding_state"`: `{"state": {column name: ColumnState}}`, made by
        `model.init` (`feature_column.init_state`, from the `"params"` rng).
        Mutable in training: the lookup inserts new rows. Immutable (eval), the
        lookup runs and its new state is dropped.
      `"embedding_lookups"`: `{"lookup": Lookup}`, written when mutable.
      `"embedding_activations"`: zeros added to the output, whose gradient is
        the gradient of the embeddings (linen's `perturb`).
    `make_train_step` handles all three; `model.init` makes only the first.

    Attributes:
      columns: the embedding columns.
      optimizer: the sparse optimizer of their tables (`optim.ftrl(...)`);
        create it once, outside the model, as it is a static argument under jit.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, flax.linen as nn
      >>> from adaptive_jax import feature_column as fc, nn as ajnn, optim
      >>> item = fc.embedding_column(
      ...     fc.categorical_column_with_hash_bucket("item", 16, dtype="int64"), 4)
      >>> opt = optim.ftrl(0.1)
      >>> class Model(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, features):
      ...         return nn.Dense(1)(ajnn.Embed([item], opt)(features))
      >>> features = fc.prepare({"item": np.array([[3], [7]])}, [item])
      >>> variables = Model().init(jax.random.key(0), features)
      >>> sorted(variables)
      ['embedding_state', 'params']
      >>> jax.tree.map(jnp.shape, variables["params"])
      {'Dense_0': {'bias': (1,), 'kernel': (4, 1)}}
      >>> tables = variables["embedding_state"]["Embed_0"]["state"]
      >>> tables["item_embedding"].static.values.shape
      (16, 4)
      >>> Model().apply(variables, features).shape  # an eval: nothing changes
      (2, 1)
    """

    columns: Sequence[fc.EmbeddingColumn]
    optimizer: Any

    @nn.compact
    def __call__(self, features: Mapping[str, adaptive.ColumnIds]) -> jax.Array:
        columns = tuple(fc.ordered(self.columns))
        _check_features(features, columns)
        state = self.variable(
            EMBEDDING_STATE,
            "state",
            lambda: fc.init_state(columns, self.optimizer, self.make_rng("params")),
        )
        embeddings, new_state, residuals = fc.input_layer(
            features, columns, state.value, optimizer=self.optimizer
        )
        if self.is_initializing():
            return embeddings
        if self.is_mutable_collection(EMBEDDING_STATE):
            state.value = new_state
        if self.is_mutable_collection(LOOKUPS):
            self.put_variable(
                LOOKUPS, "lookup", Lookup(residuals, columns, self.optimizer)
            )
        return self.perturb("activations", embeddings, collection=ACTIVATIONS)


@struct.dataclass
class TrainState:
    """Everything a train step changes; arrays only, so that it can be donated."""

    step: jax.Array  # [] int32, steps taken
    params: Any  # the "params" collection
    opt_state: Any  # the dense optimizer's state of `params`
    embeddings: Any  # the "embedding_state" collection: every Embed's tables

    @classmethod
    def create(
        cls, variables: Mapping[str, Any], tx: optax.GradientTransformation
    ) -> TrainState:
        """The state at step 0 from `model.init`'s variables.

        Raises:
          ValueError: variables in other collections (e.g. `"batch_stats"`).
        """
        others = sorted(set(variables) - {"params", EMBEDDING_STATE})
        if others:
            raise ValueError(
                f"TrainState keeps 'params' and '{EMBEDDING_STATE}', but the "
                f"variables also have {others}"
            )
        params = variables.get("params", {})
        return cls(
            jnp.zeros([], jnp.int32),
            params,
            tx.init(params),
            variables.get(EMBEDDING_STATE, {}),
        )

    @property
    def variables(self) -> dict[str, Any]:
        """The variables for `model.apply`; read-only there, as in an eval."""
        return {"params": self.params, EMBEDDING_STATE: self.embeddings}


def _check_labels(inputs: Any, labels: Any) -> None:
    """Raises a ValueError naming a feature whose batch size the labels miss."""
    leaves = jax.tree_util.tree_flatten_with_path(
        inputs, is_leaf=lambda x: isinstance(x, adaptive.ColumnIds)
    )[0]
    for path, leaf in leaves:
        if not isinstance(leaf, adaptive.ColumnIds):
            continue
        size = leaf.ids.batch_size
        for label in jax.tree.leaves(labels):
            if jnp.ndim(label) == 0 or jnp.shape(label)[0] != size:
                raise ValueError(
                    f"labels have shape {jnp.shape(label)}, but feature "
                    f"'{jax.tree_util.keystr(path, simple=True)}' has a batch of "
                    f"{size} examples: give one label per example"
                )


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    return functools.reduce(lambda node, key: node[key], path, tree)


def _replace(tree: Mapping[str, Any], path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}


def _sparse_update(
    embeddings: Any, lookups: Any, d_activations: Any, evict_every: int | None
) -> Any:
    """`feature_column.apply_gradients` (and `maybe_evict`) for every `Embed`."""
    for path, lookup in traverse_util.flatten_dict(lookups).items():
        module = path[:-1]
        state = fc.apply_gradients(
            _get(embeddings, (*module, "state")),
            lookup.residuals,
            _get(d_activations, (*module, "activations")),
            lookup.columns,
            lookup.optimizer,
        )
        if evict_every is not None:
            state = fc.maybe_evict(
                state, lookup.columns, lookup.optimizer, every=evict_every
            )
        embeddings = _replace(embeddings, (*module, "state"), state)
    return embeddings


def make_train_step(
    apply_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Any], jax.Array],
    tx: optax.GradientTransformation,
    *,
    evict_every: int | None = None,
) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """A train step: `step(state, inputs, labels) -> (state, {"loss": loss})`.

    Jit it with `donate_argnums=0`. `inputs` goes to the model as is: the
    prepared features (`feature_column.prepare`, on the host, with the routing
    masks), or a pytree holding them and other inputs. The step looks up,
    differentiates `loss_fn(apply_fn(variables, inputs), labels)` with respect to
    the params and every `Embed`'s activations, applies `tx` to the params and
    each `Embed`'s sparse optimizer to its tables, then (with `evict_every`)
    `feature_column.maybe_evict`.

    Args:
      apply_fn: the model's `apply`.
      loss_fn: `(outputs, labels) -> []` float loss.
      tx: the dense optax optimizer of the params.
      evict_every: run the columns' eviction policies every so many steps.

    Raises (when traced):
      ValueError: labels without one row per example (naming a feature), or
        features missing from the inputs (naming the column).
    """
    if evict_every is not None and evict_every < 1:
        raise ValueError(
            f"make_train_step: evict_every must be >= 1, got {evict_every}"
        )

    def train_step(
        state: TrainState, inputs: Any, labels: Any
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        _check_labels(inputs, labels)
        shapes = jax.eval_shape(
            functools.partial(apply_fn, mutable=ACTIVATIONS), state.variables, inputs
        )[1]
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), shapes.get(ACTIVATIONS, {})
        )

        def loss_of(params: Any, activations: Any) -> tuple[jax.Array, Any]:
            variables = {
                "params": params,
                EMBEDDING_STATE: state.embeddings,
                ACTIVATIONS: activations,
            }
            outputs, mutated = apply_fn(
                variables, inputs, mutable=[EMBEDDING_STATE, LOOKUPS]
            )
            return loss_fn(outputs, labels), mutated

        with jax.named_scope("aj.nn.forward_backward"):
            (loss, mutated), (d_params, d_activations) = jax.value_and_grad(
                loss_of, argnums=(0, 1), has_aux=True
            )(state.params, zeros)
        with jax.named_scope("aj.nn.dense_update"):
            updates, opt_state = tx.update(d_params, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        with jax.named_scope("aj.nn.sparse_update"):
            embeddings = _sparse_update(
                mutated.get(EMBEDDING_STATE, state.embeddings),
                mutated.get(LOOKUPS, {}),
                d_activations,
                evict_every,
            )
        step = _numerics.saturating_add(state.step, jnp.int32(1))
        new_state = TrainState(step, params, opt_state, embeddings)
        return new_state, {"loss": loss}

    return train_step


def make_eval_step(
    apply_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], jax.Array]
) -> Callable[[TrainState, Any, Any], tuple[Any, dict[str, jax.Array]]]:
    """An eval step: `eval_step(state, inputs, labels) -> (outputs, {"loss": loss})`.

    Nothing is trained, inserted or counted. `feature_column` has no read-only
    lookup over a training state (`serving.lookup` reads an export), so this
    runs the training lookup and drops its new state: each id reads what a
    training step would read (in an adaptive column, an id new to the dynamic
    table reads its bucket, which it would be migrated from). Jit it; do not
    donate the state.
    """

    def eval_step(
        state: TrainState, inputs: Any, labels: Any
    ) -> tuple[Any, dict[str, jax.Array]]:
        _check_labels(inputs, labels)
        outputs = apply_fn(state.variables, inputs)
        return outputs, {"loss": loss_fn(outputs, labels)}

    return eval_step
