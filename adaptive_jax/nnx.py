"""Flax NNX face: embedding columns inside an NNX model, and its train step.

`Embed(columns, sparse_optimizer, rngs=...)` is an NNX module whose tables
(`feature_column.init_state`) are a `Tables` variable, their own
`nnx.Variable` type and never an `nnx.Param`: `nnx.Optimizer(model, tx,
wrt=nnx.Param)` and `nnx.grad` never see a table, and no dense gradient of a
table ever exists. The tables train by jax-tpu-embedding's three phases:

1. the lookup runs in the forward pass but depends on no differentiated
   argument (ids in, rows out);
2. `jax.value_and_grad` of the loss with respect to the dense params and the
   embeddings' activations (a zero added to each `Embed`'s output);
3. each `Embed`'s sparse optimizer updates its tables from the gradient of
   its activations (`feature_column.apply_gradients`), at O(ids x dim).

`value_and_grad(loss_fn)` does the three for a custom loop and returns the
params' gradient for the dense optimizer; `make_train_step(loss_fn)` is the
whole step, jitted once with the model's state donated. Called anywhere else
(`model(features)`), an `Embed` is an eval: nothing changes and nothing is
inserted, so an id without a row reads its bucket, as a serving export
serves it. `serve(model, built)` is the model reading a
serving export instead of its tables.

Example (a model and its training loop):
  >>> import jax, numpy as np, optax
  >>> from flax import nnx
  >>> import adaptive_jax as aj
  >>> from adaptive_jax import feature_column as fc
  >>> option = aj.EmbeddingVariableOption(
  ...     capacity=64, filter_option=aj.CounterFilter(2))
  >>> item = fc.embedding_column(fc.categorical_column_with_adaptive_embedding(
  ...     "item", 32, dtype="int64", ev_option=option), dimension=4)
  >>> class CTR(nnx.Module):
  ...     def __init__(self, rngs):
  ...         self.embed = aj.nnx.Embed([item], aj.optim.ftrl(0.5), rngs=rngs)
  ...         self.hidden = nnx.Linear(4, 8, rngs=rngs)
  ...         self.out = nnx.Linear(8, 1, rngs=rngs)
  ...     def __call__(self, features):
  ...         return self.out(nnx.relu(self.hidden(self.embed(features))))[:, 0]
  >>> def loss_fn(model, features, labels):
  ...     logits = model(features)
  ...     return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  >>> model = CTR(nnx.Rngs(0))
  >>> optimizer = nnx.Optimizer(model, optax.adagrad(0.1), wrt=nnx.Param)
  >>> ids = np.arange(16)[:, None] % 8
  >>> labels = (ids[:, 0] % 2).astype(np.float32)  # odd ids click
  >>> features = fc.prepare({"item": ids}, [item])  # on the host, outside jit
  >>> step = aj.nnx.make_train_step(loss_fn)
  >>> for _ in range(20):
  ...     metrics = step(model, optimizer, features, labels)
  >>> bool(metrics["loss"] < 0.3)
  True
  >>> fc.summary(model)["item_embedding"]["live_rows"]  # ids seen twice got rows
  8
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from adaptive_jax import _faces, serving
from adaptive_jax import feature_column as fc
from adaptive_jax._faces import pad_batch as pad_batch
from adaptive_jax.column import adaptive


class Tables(nnx.Variable):
    """The tables of an `Embed`'s columns: `{column name: ColumnState}`, as
    `feature_column.init_state` makes them (the static table, the dynamic
    table, its sketch, counters and optimizer slots). Not an `nnx.Param`: a
    sparse optimizer updates them, never the dense one."""


class Served(nnx.Variable):
    """A serving export's columns, built (`serving.build`): what a served
    `Embed` reads instead of its tables."""


@dataclasses.dataclass
class _Pass:
    """One forward pass inside `value_and_grad`: what each `Embed` (by its path
    in the model) adds to its output, and what its lookup left for the update."""

    paths: dict[int, tuple]  # id(Embed) -> its path in the model
    activations: dict[tuple, jax.Array] | None  # None: only shapes are asked
    shapes: dict[tuple, jax.ShapeDtypeStruct] = dataclasses.field(default_factory=dict)
    tables: dict[tuple, Any] = dataclasses.field(default_factory=dict)
    residuals: dict[tuple, Any] = dataclasses.field(default_factory=dict)


_PASS: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar(
    "adaptive_jax_nnx_pass", default=None
)


@contextlib.contextmanager
def _forward(current: _Pass) -> Iterator[_Pass]:
    token = _PASS.set(current)
    try:
        yield current
    finally:
        _PASS.reset(token)


# One compiled program, not an eager dispatch (and a compile) per array op.
_init_state = jax.jit(fc.init_state, static_argnums=(0, 1))


class Embed(nnx.Module):
    """The embeddings of a set of columns: `[batch, sum of widths]`, the
    columns in the order of their names (`feature_column.ordered`), or with
    `by_name=True` a dict `{column name: [batch, width]}`.

    Takes `feature_column.prepare`'s output (a dict that may hold other
    columns' ids too); prepare on the host, outside jit. Call each `Embed` once
    per forward pass. Inside `value_and_grad` (and `make_train_step`) its
    lookup inserts rows and its tables train; called anywhere else it is an
    eval: nothing is inserted; an id without a row reads its bucket.

    Attributes:
      columns: the embedding columns, in the order of their names.
      optimizer: the sparse optimizer of their tables (`optim.ftrl(...)`).
      by_name: return a dict by column name instead of the concatenation.
      tables: a `Tables` variable, `{column name: ColumnState}`.

    Example:
      >>> import jax, numpy as np
      >>> from flax import nnx
      >>> from adaptive_jax import feature_column as fc, nnx as ajnnx, optim
      >>> user = fc.embedding_column(
      ...     fc.categorical_column_with_hash_bucket("user", 16), 2)
      >>> item = fc.embedding_column(
      ...     fc.categorical_column_with_hash_bucket("item", 16, dtype="int64"), 4)
      >>> embed = ajnnx.Embed([user, item], optim.ftrl(0.1), by_name=True,
      ...                     rngs=nnx.Rngs(0))
      >>> features = fc.prepare(
      ...     {"user": np.array(["a", "b"]), "item": np.array([3, 7])}, [user, item])
      >>> {name: e.shape for name, e in embed(features).items()}
      {'item_embedding': (2, 4), 'user_embedding': (2, 2)}
      >>> sorted(embed.tables.get_value())
      ['item_embedding', 'user_embedding']
      >>> len(nnx.state(embed, nnx.Param))  # nothing for a dense optimizer
      0
    """

    def __init__(
        self,
        columns: Sequence[fc.EmbeddingColumn],
        optimizer: Any,
        *,
        rngs: nnx.Rngs,
        by_name: bool = False,
    ):
        self.columns = tuple(fc.ordered(columns))
        self.optimizer = optimizer
        self.by_name = by_name
        self.tables = Tables(_init_state(self.columns, optimizer, rngs.params()))

    def _output(self, embeddings: jax.Array) -> Any:
        return _faces.by_name(embeddings, self.columns) if self.by_name else embeddings

    def __call__(self, features: Mapping[str, adaptive.ColumnIds]) -> Any:
        _faces.check_features(features, self.columns)
        current = _PASS.get()
        path = None if current is None else current.paths.get(id(self))
        if path is not None and current.activations is None:
            # Only the output's shape is asked: no lookup to trace.
            first = features[self.columns[0].name].ids.batch_size
            examples = first // self.columns[0].categorical_column.fields
            shape = (examples, sum(c.width for c in self.columns))
            current.shapes[path] = jax.ShapeDtypeStruct(shape, jnp.float32)
            return self._output(jnp.zeros(shape, jnp.float32))
        embeddings, tables, residuals = fc.input_layer(
            features,
            self.columns,
            self.tables.get_value(),
            optimizer=self.optimizer,
            training=path is not None,
        )
        if path is not None:
            if path in current.residuals:
                raise ValueError(
                    f"Embed at {'.'.join(map(str, path)) or 'the top'} was called "
                    "twice in one forward pass; call each Embed once"
                )
            current.tables[path], current.residuals[path] = tables, residuals
            embeddings = embeddings + current.activations[path]
        return self._output(embeddings)


def _embeds(model: Any) -> dict[tuple, Embed]:
    return {
        path: module
        for path, module in nnx.iter_modules(model)
        if isinstance(module, Embed)
    }


def value_and_grad(
    loss_fn: Callable[..., Any],
    *,
    has_aux: bool = False,
    evict_every: int | None = None,
) -> Callable[..., tuple[Any, nnx.State]]:
    """`loss_fn`'s value and its gradient by the params; trains the tables.

    `grad_fn = value_and_grad(loss_fn)` gives `grad_fn(model, *args) ->
    (loss, grads)`: the forward pass `loss_fn(model, *args)` (with `has_aux`,
    `(loss, aux)`), its gradient with respect to the model's `nnx.Param`s for
    the dense optimizer (`optimizer.update(model, grads)`), and, in place on
    the model, every `Embed`'s tables updated by its sparse optimizer from the
    gradient of its output (then, with `evict_every`, its eviction policies
    every so many steps). Other state the forward pass changes (batch
    statistics, rng counts) is written back too. Jit the loop that calls it;
    `make_train_step` does.

    Raises:
      ValueError: a model without an `Embed`, or an `Embed` called twice.
    """
    if evict_every is not None and evict_every < 1:
        raise ValueError(f"value_and_grad: evict_every must be >= 1, got {evict_every}")

    def grad_fn(model: Any, *args: Any, **kwargs: Any) -> tuple[Any, nnx.State]:
        embeds = _embeds(model)
        if not embeds:
            raise ValueError(
                "adaptive_jax.nnx.value_and_grad: the model has no "
                "adaptive_jax.nnx.Embed; use nnx.value_and_grad"
            )
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def forward(params: nnx.State, activations: Any) -> tuple[Any, Any]:
            copy = nnx.merge(graphdef, params, rest)
            paths = {id(m): path for path, m in _embeds(copy).items()}
            with _forward(_Pass(paths, activations)) as current:
                out = loss_fn(copy, *args, **kwargs)
            loss, aux = out if has_aux else (out, None)
            after = nnx.state(copy, nnx.Not(nnx.Param))
            found = (current.shapes, current.tables, current.residuals)
            return loss, (aux, after, found)

        with jax.named_scope("aj.nnx.shapes"):
            shapes = jax.eval_shape(forward, params, None)[1][2][0]
        zeros = {p: jnp.zeros(s.shape, s.dtype) for p, s in shapes.items()}
        with jax.named_scope("aj.nnx.forward_backward"):
            (loss, (aux, after, found)), (grads, d_act) = jax.value_and_grad(
                forward, argnums=(0, 1), has_aux=True
            )(params, zeros)
        nnx.update(model, after)
        _, tables, residuals = found
        with jax.named_scope("aj.nnx.sparse_update"):
            for path, residual in residuals.items():
                embed = embeds[path]
                new = fc.apply_gradients(
                    tables[path], residual, d_act[path], embed.columns, embed.optimizer
                )
                if evict_every is not None:
                    new = fc.maybe_evict(
                        new, embed.columns, embed.optimizer, every=evict_every
                    )
                embed.tables.set_value(new)
        return ((loss, aux) if has_aux else loss), grads

    return grad_fn


def make_train_step(
    loss_fn: Callable[..., jax.Array], *, evict_every: int | None = None
) -> Callable[..., dict[str, jax.Array]]:
    """A train step: `step(model, optimizer, inputs, labels) -> {"loss": loss}`.

    `loss_fn(model, inputs, labels) -> []` float loss. The step runs
    `value_and_grad(loss_fn)` (the tables train), then `optimizer.update(model,
    grads)` (an `nnx.Optimizer(model, tx, wrt=nnx.Param)`), and updates the
    model and the optimizer in place. It is one `jax.jit` of the split state
    with the state donated (the tables update in place, nothing is copied):
    the (model, optimizer) pair last given is split once, and each call reads
    its variables' values and writes the new ones back, with no walk of the
    graph (an `nnx.jit`, `nnx.split` or `nnx.update` walks it at every call:
    benchmarks/flax_bench.py measures the ways against the linen step). So the
    model must keep its structure between steps, as with `nnx.cached_partial`:
    after assigning a new submodule or variable, make a new step (new values
    of its variables, `nnx.update` from a checkpoint say, need nothing).

    `step.pure(graphdef, state, inputs, labels) -> (state, metrics)` is the
    same step as a pure function, a `jax.jit` that donates `state`: split once
    (`graphdef, state = nnx.split((model, optimizer))`), loop, and
    `nnx.update((model, optimizer), state)` at the end.

    Labels are any pytree `loss_fn` takes: to weight examples (a short last
    batch padded by `pad_batch`, its padding weighted 0), pass `(labels,
    weights)` and weight the loss in `loss_fn`; one size of batch compiles once.

    Raises (when traced):
      ValueError: labels without one row per example (naming a feature), or
        features missing from the inputs (naming the column).
    """
    grad_fn = value_and_grad(loss_fn, evict_every=evict_every)

    def body(model, optimizer, inputs, labels):
        _faces.check_labels(inputs, labels)
        loss, grads = grad_fn(model, inputs, labels)
        with jax.named_scope("aj.nnx.dense_update"):
            optimizer.update(model, grads)
        return {"loss": loss}

    def pure(graphdef, state, inputs, labels):
        model, optimizer = nnx.merge(graphdef, state)
        metrics = body(model, optimizer, inputs, labels)
        return nnx.state((model, optimizer)), metrics

    def on_values(graphdef, treedef, values, inputs, labels):
        state = jax.tree.unflatten(treedef, jax.tree.leaves(values))
        state, metrics = pure(graphdef, state, inputs, labels)
        if jax.tree.structure(state) != treedef:
            raise ValueError(
                "adaptive_jax.nnx.make_train_step: the step changed the model's "
                "structure (a variable made in the forward pass?); make the "
                "variables in __init__"
            )
        return [v.get_raw_value() for _, v in nnx.to_flat_state(state)], metrics

    compiled: dict[Any, Callable] = {}  # by graphdef: models alike share one
    last: list[Any] = [None, None, None, None]  # model, optimizer refs; vars; fn

    def step(
        model: Any, optimizer: nnx.Optimizer, inputs: Any, labels: Any
    ) -> dict[str, jax.Array]:
        model_ref, optimizer_ref, variables, jitted = last
        if (
            model_ref is None
            or model_ref() is not model
            or optimizer_ref() is not optimizer
        ):
            graphdef, state = nnx.split((model, optimizer))
            variables = [v for _, v in nnx.to_flat_state(state)]
            treedef = jax.tree.structure(state)
            key = (graphdef, treedef)
            if key not in compiled:
                compiled[key] = jax.jit(
                    functools.partial(on_values, graphdef, treedef),
                    donate_argnums=0,
                )
            jitted = compiled[key]
            last[:] = [weakref.ref(model), weakref.ref(optimizer), variables, jitted]
        values, metrics = jitted([v.get_raw_value() for v in variables], inputs, labels)
        for variable, value in zip(variables, values, strict=True):
            variable.set_raw_value(value)
        return metrics

    step.pure = jax.jit(pure, static_argnums=0, donate_argnums=1)
    return step


def columns(model: Any) -> tuple[fc.EmbeddingColumn, ...]:
    """The columns of every `Embed` in the model, in the order of their names."""
    return tuple(fc.ordered([c for e in _embeds(model).values() for c in e.columns]))


def tables(model: Any) -> dict[str, adaptive.ColumnState]:
    """The tables of every `Embed` in the model, by column name: what
    `export.export(tables(model), columns(model))` and `feature_column.summary`
    take.

    Raises:
      ValueError: two `Embed`s with a column of the same name.
    """
    found: dict[str, adaptive.ColumnState] = {}
    for path, embed in _embeds(model).items():
        for name, state in embed.tables.get_value().items():
            if name in found:
                raise ValueError(
                    f"column '{name}' is in two Embeds (one at {path}): give "
                    "columns distinct names"
                )
            found[name] = state
    return found


class ServedEmbed(nnx.Module):
    """An `Embed` that reads a serving export (`serving.build`'s columns) and
    never its tables: `serving.lookup`, read-only, with the same output."""

    def __init__(self, embed: Embed, built: Mapping[str, serving.ServingColumn]):
        missing = [c.name for c in embed.columns if c.name not in built]
        if missing:
            raise ValueError(
                f"serve: the export lacks the columns {missing} (it has "
                f"{sorted(built)}); export every column of the model"
            )
        self.columns = embed.columns
        self.by_name = embed.by_name
        self.built = Served({c.name: built[c.name] for c in embed.columns})

    def __call__(self, features: Mapping[str, Any]) -> Any:
        embeddings = serving.lookup(self.built.get_value(), features)
        return _faces.by_name(embeddings, self.columns) if self.by_name else embeddings


def serve(model: Any, built: Mapping[str, serving.ServingColumn]) -> Any:
    """The model reading a serving export: a copy in which each `Embed` is a
    `ServedEmbed` over `built` (`serving.build(serving.load(directory))`).

    The copy shares the model's other variables (the dense params) and holds
    no table, so `served(features)` gives the model's outputs from the export,
    with the features from `serving.prepare(built, raw)` or
    `feature_column.prepare` (the same ids). For a serving process without the
    tables, build the model under `nnx.eval_shape`, `serve` it, and
    `nnx.update` it with the dense params.

    Raises:
      ValueError: an export without one of the model's columns, naming it.
    """
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)
    for path, embed in sorted(_embeds(copy).items(), key=lambda item: -len(item[0])):
        served = ServedEmbed(embed, built)
        if not path:
            return served
        parent = copy
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        if isinstance(path[-1], int):
            parent[path[-1]] = served
        else:
            setattr(parent, path[-1], served)
    return copy
