"""Flax (linen) face: embedding columns inside a Flax model, and its train step.

`Embed` wraps a set of embedding columns as a linen module. Its tables live in
the `"embedding_state"` collection, never in `"params"`, so `jax.grad` over the
params never sees a table and the dense optax optimizer never touches one.
`make_train_step` builds jax-tpu-embedding's step: `jax.value_and_grad` of the
loss with respect to (dense params, embedding activations), then the dense optax
optimizer on the params and the sparse optimizer on the tables, fed by the
gradient of the activations (`feature_column.apply_gradients`).

The NNX face (`adaptive_jax.nnx`, Flax's recommended API) is the first one; this
one is for linen models. A linen `Embed` run through `nnx.bridge.ToNNX` could
not train its tables (the bridge applies it with its collections immutable), so
the bridge raises, naming `adaptive_jax.nnx.Embed`.

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
from flax import nnx, struct, traverse_util

from adaptive_jax import _faces, _numerics, serving
from adaptive_jax import feature_column as fc
from adaptive_jax._faces import pad_batch as pad_batch
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


class Embed(nn.Module):
    """The concatenated embeddings of a set of columns, `[batch, sum of dims]`.

    Takes `feature_column.prepare`'s output (a dict that may hold the ids of
    other columns too); prepare on the host, outside jit. Call each `Embed` once
    per forward pass.

    Collections:
      `"embedding_state"`: `{"state": {column name: ColumnState}}`, made by
        `model.init` (`feature_column.init_state`, from the `"params"` rng).
        Mutable in training: the lookup inserts new rows. Immutable (eval), the
        lookup inserts nothing: an id without a row reads its bucket, as in a
        serving export.
      `"embedding_lookups"`: `{"lookup": Lookup}`, written when mutable.
      `"embedding_activations"`: zeros added to the output, whose gradient is
        the gradient of the embeddings (linen's `perturb`).
    `make_train_step` handles all three; `model.init` makes only the first.

    The output is `[batch, sum of widths]`, the columns in the order of their
    names (`feature_column.ordered`, TensorFlow's rule), not the order given;
    with `by_name=True`, a dict `{column name: [batch, width]}`.

    Attributes:
      columns: the embedding columns.
      optimizer: the sparse optimizer of their tables (`optim.ftrl(...)`);
        create it once, outside the model, as it is a static argument under jit.
      by_name: return a dict by column name instead of the concatenation.

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
    by_name: bool = False

    @nn.compact
    def __call__(self, features: Mapping[str, adaptive.ColumnIds]) -> jax.Array:
        columns = tuple(fc.ordered(self.columns))
        _faces.check_features(features, columns)
        state = self.variable(
            EMBEDDING_STATE,
            "state",
            lambda: fc.init_state(columns, self.optimizer, self.make_rng("params")),
        )
        embeddings, new_state, residuals = fc.input_layer(
            features,
            columns,
            state.value,
            optimizer=self.optimizer,
            training=self.is_mutable_collection(EMBEDDING_STATE),
        )
        if self.is_initializing():
            return self._output(embeddings)
        if self.is_mutable_collection(EMBEDDING_STATE):
            state.value = new_state
        if self.is_mutable_collection(LOOKUPS):
            self.put_variable(
                LOOKUPS, "lookup", Lookup(residuals, columns, self.optimizer)
            )
        return self._output(
            self.perturb("activations", embeddings, collection=ACTIVATIONS)
        )

    def _output(self, embeddings: jax.Array) -> Any:
        if self.by_name:
            return _faces.by_name(embeddings, self.columns)
        return embeddings


class _BridgedTables(nnx.Variable):
    """What `nnx.bridge.ToNNX` would make of the `"embedding_state"`
    collection: never made. The bridge applies a linen module with its
    collections immutable, so an `Embed` inside it would look up, insert
    nothing and never update its tables, while the dense params train: no
    error, a model that learns less. Making one raises instead."""

    def __init__(self, *args: Any, **kwargs: Any):
        del args, kwargs
        raise TypeError(
            "adaptive_jax.nn.Embed (linen) cannot train its tables through "
            "flax.nnx.bridge.ToNNX: the bridge applies it with its collections "
            "immutable, so its lookups would insert nothing and no sparse update "
            "would run. In an NNX model use adaptive_jax.nnx.Embed (its tables are "
            "an nnx.Variable that adaptive_jax.nnx.make_train_step trains)"
        )


if nnx.variablelib.VariableTypeCache.get(EMBEDDING_STATE) is None:
    nnx.register_variable_name(EMBEDDING_STATE, _BridgedTables)


@struct.dataclass
class TrainState:
    """Everything a train step changes; arrays only, so that it can be donated.

    The tables are in `embeddings`, by module path: `state.embeddings["Embed_0"]
    ["state"]` is one `Embed`'s `{column name: ColumnState}`, what
    `export.export` takes; `feature_column.summary(state)` finds them all.

    Unlike `flax.training.train_state.TrainState`, it holds no `apply_fn` or
    `tx` and has no `apply_gradients(grads=...)`: a dense gradient tree cannot
    train the tables, whose update needs the lookup's residuals and the
    gradient of the activations; a method that took it would train the dense
    params alone, silently. `make_train_step(apply_fn, loss_fn, tx)` takes the
    two and does both updates.
    """

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

    Labels are any pytree `loss_fn` takes (one row per example in each leaf):
    to weight examples, e.g. a short last batch padded to the batch size by
    `pad_batch` (its padding weighted 0) so that the step does not compile
    again, pass `(labels, weights)` and weight the loss in `loss_fn`.

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
        _faces.check_labels(inputs, labels)
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

    Nothing is trained, inserted or counted: each id with a row reads it, the
    others their buckets (`input_layer(..., training=False)`), as a serving
    export of the state serves them, whichever ids share the batch. Jit it;
    do not donate the state.
    """

    def eval_step(
        state: TrainState, inputs: Any, labels: Any
    ) -> tuple[Any, dict[str, jax.Array]]:
        _faces.check_labels(inputs, labels)
        outputs = apply_fn(state.variables, inputs)
        return outputs, {"loss": loss_fn(outputs, labels)}

    return eval_step


def serve(
    apply_fn: Callable[..., Any], built: Mapping[str, serving.ServingColumn]
) -> Callable[..., Any]:
    """The model reading a serving export: `served(params, features)` is
    `apply_fn({"params": params}, features)` with each `Embed` replaced by
    `serving.lookup` of its columns in `built` (`serving.build(serving.load(
    directory))`), read-only, same output (by name if the `Embed` says so).

    `features` come from `serving.prepare(built, raw)` (or
    `feature_column.prepare`: the same ids); no tables are needed, only the
    dense params (`state.params`). Jittable.

    Raises (when traced):
      ValueError: an export without one of an `Embed`'s columns, naming it.
    """

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if not isinstance(module, Embed) or context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        columns = fc.ordered(module.columns)
        missing = [c.name for c in columns if c.name not in built]
        if missing:
            raise ValueError(
                f"serve: the export lacks the columns {missing} (it has "
                f"{sorted(built)}); export every column of the model"
            )
        embeddings = serving.lookup({c.name: built[c.name] for c in columns}, args[0])
        return module._output(embeddings)

    def served(params: Any, *args: Any, **kwargs: Any) -> Any:
        with nn.intercept_methods(interceptor):
            return apply_fn({"params": params}, *args, **kwargs)

    return served
