"""The input layer over many columns: their state, lookup and sparse update.

`init_state` draws each column's tables; `input_layer` looks every column up
(inserting and migrating promoted ids) and concatenates their embeddings;
`apply_gradients` feeds the gradient of that output back to each column as
sparse updates. Both are jitted, on one device or, with a `sharding.Layout`,
inside `shard_map` over its mesh; a partitioned column goes through
`column.partitioned`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from adaptive_jax import optim
from adaptive_jax.column import (
    adaptive,
    initializers,
    partitioned,
    stacking,
    statistics,
)
from adaptive_jax.column import ev as ev_lib
from adaptive_jax.feature_column import _checks
from adaptive_jax.feature_column._prepare import prepare
from adaptive_jax.feature_column._specs import EmbeddingColumn, ordered
from adaptive_jax.table import _sketch


def _step_options(
    column: EmbeddingColumn, optimizer: Any, training: bool = True
) -> adaptive.StepOptions:
    """What the column's lookup and update need of it and of the optimizer."""
    static_spec, dynamic_spec = optimizers(column, optimizer)
    categorical = column.categorical_column
    option = categorical.ev_option
    return adaptive.StepOptions(
        combiner=column.combiner,
        static_optimizer=static_spec,
        dynamic_optimizer=dynamic_spec,
        migration=categorical.migration,
        admission=option.filter_option if option else None,
        no_permission_value=(
            option.init_option.default_value_no_permission if option else 0.0
        ),
        feature_salts=(
            (0,)
            if categorical.members is None
            else tuple(int(stacking.salt(m.key)) for m in categorical.members)
        ),
        inserts=training,
    )


def _placement(layout: Any, name: str, axis_name: str | None) -> adaptive.Placement:
    """Where column `name`'s step runs: one device, or the layout's mesh axis."""
    if layout is None:
        return adaptive.Placement(axis_name)
    return adaptive.Placement(
        axis_name,
        split_static=layout.splits_static(name),
        static_limit=layout.static_limit(name),
        exchange_limit=layout.limit(name),
        split_limit=layout.split_limit(name),
    )


def on_layout(
    layout: Any, body: Callable, args: tuple, kinds: tuple[str, ...], out: Any
) -> Any:
    """`body(*args)` on one device, or over the layout's mesh in `shard_map`,
    each argument split as its kind says: "batch" over the mesh axis, "state"
    as the embedding state's partitions and replicas (`Layout.state_specs` of
    the argument of that kind). `out` is the kinds of the outputs, a tuple of
    them or one."""
    if layout is None:
        return body(*args)
    state = args[kinds.index("state")]
    spec = {"batch": layout.split(), "state": layout.state_specs(state)}
    out_specs = spec[out] if isinstance(out, str) else tuple(spec[k] for k in out)
    return layout.run(body, args, tuple(spec[k] for k in kinds), out_specs)


def optimizers(column: EmbeddingColumn, optimizer: Any) -> tuple[Any, Any]:
    """The specs of the static and the dynamic table (DeepRec's row-wise L1)."""
    spec = optim.spec_of(optimizer)
    option = column.categorical_column.ev_option
    dynamic = adaptive.with_l1_mode(spec, option.l1_mode) if option else spec
    return adaptive.with_l1_mode(spec, "coordinate"), dynamic


def init_state(
    feature_columns: Sequence[EmbeddingColumn], optimizer: Any, key: jax.Array
) -> dict[str, adaptive.ColumnState]:
    """The state of each column, by name: tables drawn from the initializers,
    optimizer slots at their initial values, empty dynamic tables. A column with
    `partition_num` P gets P partitions of `ceil(capacity / P)` rows each, along
    a leading axis of its dynamic table and sketch."""
    state = {}
    for column, column_key in zip(
        ordered(feature_columns),
        jax.random.split(key, len(feature_columns)),
        strict=True,
    ):
        categorical = column.categorical_column
        dim = column.dimension
        init = column.initializer or initializers.truncated_normal(
            stddev=1 / math.sqrt(dim)
        )
        static_key, default_key = jax.random.split(column_key)
        static_spec, dynamic_spec = optimizers(column, optimizer)
        static = dynamic = defaults = sketch = None
        if categorical.hash_bucket_size is not None:
            values = init(static_key, (categorical.hash_bucket_size, dim), jnp.float32)
            static = adaptive.StaticTable.create(values, static_spec)
        if categorical.ev_option is not None:
            option = categorical.ev_option
            parts = categorical.partition_num or 1
            capacity = -(-option.capacity // parts)  # rows of each partition
            dynamic = ev_lib.EmbeddingVariable.create(capacity, dim, dynamic_spec)
            if option.filter_option is not None:
                admission = option.filter_option
                shape = admission.sketch_shape(capacity, parts)
                sketch = _sketch.Sketch.create(*shape, admission.counter_dtype)
            if categorical.partition_num is not None:
                dynamic = partitioned.stacked(dynamic, parts)
                sketch = partitioned.stacked(sketch, parts)
            if categorical.hash_bucket_size is None or categorical.migration in (
                "none",
                "fitted",
            ):
                draw = option.init_option.initializer or init
                shape = (option.init_option.default_value_dim, dim)
                defaults = draw(default_key, shape, jnp.float32)
        share = None
        if (
            static is not None
            and dynamic is not None
            and categorical.migration == "fitted"
        ):
            share = adaptive.ShareEvidence.create(categorical.fields)
        state[column.name] = adaptive.ColumnState(
            static,
            dynamic,
            defaults,
            sketch,
            statistics.ColumnStats.create(),
            jnp.zeros([], jnp.int32),
            share,
        )
    return state


def input_layer(
    features: Mapping[str, Any],
    feature_columns: Sequence[EmbeddingColumn],
    state: Mapping[str, adaptive.ColumnState],
    *,
    optimizer: Any,
    adaptive_mask_tensors: Mapping[str, Any] | None = None,
    layout: Any = None,
    training: bool = True,
) -> tuple[jax.Array, dict[str, adaptive.ColumnState], dict[str, adaptive.Residuals]]:
    """The embeddings of the columns, concatenated: `[batch, sum of dimensions]`.

    Inserts the dynamic-routed ids that have no row yet (migrating them from
    their buckets) and returns the new state, and the residuals that
    `apply_gradients` needs. Jittable when `features` is `prepare`'s output
    (pass `optimizer` and the columns as static); raw features are prepared
    here first, on the host.

    Args:
      features: `prepare`'s output, or raw features (see `prepare`).
      feature_columns: the embedding columns.
      state: `init_state`'s output; donate it under jit.
      optimizer: the optimizer of the tables (`optim.ftrl(...)`, ...): new rows
        get its slots.
      adaptive_mask_tensors: with raw features, the routing masks.
      layout: a `sharding.Layout` to run over a device mesh (the features from
        `sharding.prepare`, the state from `Layout.place`), or None.
      training: False for an evaluation: nothing is admitted or inserted, an
        id without a row reads its bucket, as a serving export serves it
        (the result does not depend on which ids share the batch).

    Returns:
      `(embeddings, state, residuals)`.

    Raises:
      ValueError: a state not made for these columns and optimizer (another
        number of buckets, dimension, capacity, partitions, admission filter
        or optimizer), features prepared for other columns, raw features
        traced inside jit, or bad raw features (see `prepare`); each names the
        column, before any state changes. An empty batch (0 examples) is a
        valid step: `[0, width]` embeddings, nothing inserted.
    """
    if not isinstance(training, bool):
        raise ValueError(
            f"input_layer: training must be True (a training lookup, which inserts "
            f"rows) or False (an eval, which inserts nothing), got {training!r}"
        )
    columns = tuple(ordered(feature_columns))
    if layout is not None:
        layout.check(columns)
    _checks.check_state(state, columns, optimizer)
    prepared = _checks.check_features(features, columns, state)
    if prepared and adaptive_mask_tensors is not None:
        raise ValueError(
            "input_layer: adaptive_mask_tensors routes raw features; these are "
            "prepared already, with the masks fc.prepare was given: pass the "
            "masks to fc.prepare instead"
        )
    if not prepared:
        if layout is not None:
            raise ValueError(
                "input_layer with a layout takes features from sharding.prepare"
            )
        features = prepare(
            features, columns, adaptive_mask_tensors=adaptive_mask_tensors
        )
    features = {c.name: features[c.name] for c in columns}
    return _input_layer(
        features,
        dict(state),
        columns=columns,
        optimizer=optimizer,
        layout=layout,
        training=training,
    )


@functools.partial(
    jax.jit, static_argnames=("columns", "optimizer", "layout", "training")
)
def _input_layer(
    features: dict[str, adaptive.ColumnIds],
    state: dict[str, adaptive.ColumnState],
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any,
    training: bool,
) -> tuple[jax.Array, dict[str, adaptive.ColumnState], dict[str, adaptive.Residuals]]:
    """`input_layer` on prepared features; jitted, so that it runs fast eagerly too."""

    def per_device(features, state, axis_name=None):
        outputs, residuals = [], {}
        for column in columns:
            categorical, name = column.categorical_column, column.name
            options = _step_options(column, optimizer, training)
            placement = _placement(layout, name, axis_name)
            inputs = stacking.step_buckets(
                features[name], categorical.hash_bucket_size, categorical.members
            )
            if categorical.partition_num is None:
                looked_up = adaptive.lookup(state[name], inputs, options, placement)
            else:
                looked_up = partitioned.lookup(
                    state[name],
                    inputs,
                    options,
                    placement,
                    num_partitions=categorical.partition_num,
                )
            embeddings, state[name], residuals[name] = looked_up
            examples = embeddings.shape[0] // categorical.fields
            # A stacked column's fields side by side.
            outputs.append(embeddings.reshape(examples, column.width))
        return jnp.concatenate(outputs, axis=1), state, residuals

    kinds, out = ("batch", "state"), ("batch", "state", "batch")
    return on_layout(layout, per_device, (features, state), kinds, out)


def apply_gradients(
    state: Mapping[str, adaptive.ColumnState],
    residuals: Mapping[str, adaptive.Residuals],
    d_embeddings: jax.Array,
    feature_columns: Sequence[EmbeddingColumn],
    optimizer: Any,
    *,
    layout: Any = None,
    nonfinite: str = "skip",
) -> dict[str, adaptive.ColumnState]:
    """Sparse optimizer steps from the gradient of `input_layer`'s output. Jittable.

    Args:
      state: the state `input_layer` returned; donate it under jit.
      residuals: `input_layer`'s residuals.
      d_embeddings: `[batch, sum of dimensions]`, the gradient of the embeddings.
      feature_columns: the columns given to `input_layer`.
      optimizer: the optimizer of the tables.
      layout: the `sharding.Layout` given to `input_layer`, or None.
      nonfinite: what a table row whose update is not finite (a NaN or inf
        gradient, or an overflow) does. "skip" (the default): it keeps its
        value and slots, and the statistics count it (`summary`'s
        `nonfinite_rows`), so a table never holds a NaN or inf. "raise": the
        same, and then a `checkify` error naming the column; eagerly it
        raises (`JaxRuntimeError`) and returns no state; inside a jitted step,
        run the step under `checkify.checkify` and `err.throw()` (for debug
        runs: it adds a check to every step).

    Returns:
      The state, each column's step one further. An empty batch (0 examples)
      changes only the steps.

    Raises:
      ValueError: before any state changes, naming the column: a gradient not
        `[batch, sum of widths]` of the batch's rows, or not floating;
        residuals of other columns; a state not made for these columns and
        optimizer.
    """
    columns = tuple(ordered(feature_columns))
    _checks.check_nonfinite(nonfinite)
    _checks.check_gradients(d_embeddings, residuals, columns)
    _checks.check_state(state, columns, optimizer)
    args = (dict(state), dict(residuals), d_embeddings)
    options = dict(columns=columns, optimizer=optimizer, layout=layout)
    if nonfinite == "skip":
        return _apply_gradients(*args, **options)
    error, new = checkify.checkify(_raising)(*args, **options)
    checkify.check_error(error)
    return new


def _raising(state, residuals, d_embeddings, **options) -> dict:
    """`_apply_gradients`, then a `checkify` check per column that no row's
    update was skipped as not finite."""
    new = _apply_gradients(state, residuals, d_embeddings, **options)
    for column in options["columns"]:
        before = state[column.name].stats.nonfinite_rows
        skipped = new[column.name].stats.nonfinite_rows - before
        checkify.check(
            skipped == 0,
            f"column '{column.categorical_column.key}': {{rows}} table rows got an "
            "update that was not finite (a NaN or inf gradient, or an overflow) "
            "and kept their values",
            rows=skipped,
        )
    return new


@functools.partial(jax.jit, static_argnames=("columns", "optimizer", "layout"))
def _apply_gradients(
    state: dict[str, adaptive.ColumnState],
    residuals: dict[str, adaptive.Residuals],
    d_embeddings: jax.Array,
    *,
    columns: tuple[EmbeddingColumn, ...],
    optimizer: Any,
    layout: Any,
) -> dict[str, adaptive.ColumnState]:
    """`apply_gradients`, jitted."""

    def per_device(state, residuals, d_embeddings, axis_name=None):
        start = 0
        for column in columns:
            gradient = d_embeddings[:, start : start + column.width]
            gradient = gradient.reshape(-1, column.dimension)  # a stacked column's
            start += column.width
            update = (
                adaptive.apply_gradients
                if column.categorical_column.partition_num is None
                else partitioned.apply_gradients
            )
            state[column.name] = update(
                state[column.name],
                residuals[column.name],
                gradient,
                _step_options(column, optimizer),
                _placement(layout, column.name, axis_name),
            )
        return state

    args = (state, residuals, d_embeddings)
    return on_layout(layout, per_device, args, ("state", "batch", "batch"), "state")
