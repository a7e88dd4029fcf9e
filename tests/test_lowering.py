"""The train step lowers for CUDA and TPU: `jax.export` with platforms
["cuda", "tpu"] on a CPU machine, and the module has no custom call and no
host callback, so that no change can quietly make the step CPU-only.

Two steps: an adaptive column with admission (`CounterFilter`) and eviction
(`GlobalStepEvict`), and a partitioned column (4 partitions of its dynamic
table); the second also on a mesh of 4 host devices (`parallel.Layout`: a
`shard_map` with all-to-all exchanges, whose shardings lower to Shardy's
operations, not to custom calls).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax.parallel import sharding

PLATFORMS = ("cuda", "tpu")
BATCH, WIDTH, SIZE = 16, 2, 64
OPT = aj.optim.ftrl(0.1, l1_regularization_strength=0.01)
_CUSTOM_CALL = re.compile(
    r"stablehlo\.custom_call\s*@([\w.]+)|custom_call_target\s*=\s*\"([^\"]+)\""
)
_HOST = re.compile(
    r"callback|host|infeed|outfeed|stablehlo\.(send|recv)\b", re.IGNORECASE
)


def adaptive_columns(partition_num: int | None = None):
    option = aj.EmbeddingVariableOption(
        capacity=64,
        filter_option=aj.CounterFilter(2),
        evict_option=aj.GlobalStepEvict(3),
    )
    column = fc.categorical_column_with_adaptive_embedding(
        "a", 16, dtype="int64", partition_num=partition_num, ev_option=option
    )
    return [fc.embedding_column(column, 4)]


def make_step(columns, layout=None):
    def step(state, prepared, labels):
        emb, state, residuals = fc.input_layer(
            prepared, columns, state, optimizer=OPT, layout=layout
        )

        def loss_fn(emb):
            logits = jnp.sum(emb, axis=1)
            return jnp.mean(jax.nn.softplus(logits) - labels * logits)

        loss, d_emb = jax.value_and_grad(loss_fn)(emb)
        state = fc.apply_gradients(state, residuals, d_emb, columns, OPT, layout=layout)
        state = fc.maybe_evict(state, columns, OPT, every=2, layout=layout)
        return state, loss

    return jax.jit(step, donate_argnums=0)


def features():
    rng = np.random.default_rng(0)
    ids = rng.integers(-(2**40), 2**40, (BATCH, WIDTH))
    ids[rng.random(ids.shape) < 0.25] = -1
    return {"a": ids}, rng.integers(0, 2, BATCH).astype(np.float32)


def exported_text(step, *args) -> str:
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)
        ),
        args,
    )
    exported = jax.export.export(step, platforms=PLATFORMS)(*abstract)
    assert exported.platforms == PLATFORMS
    return exported.mlir_module()


def offenders(text: str) -> list[str]:
    """The custom calls and host operations of a module."""
    calls = {a or b for a, b in _CUSTOM_CALL.findall(text)}
    found = sorted(calls)
    ops = {
        m.group(0)
        for line in text.splitlines()
        for m in _HOST.finditer(line)
        if not line.lstrip().startswith(("//", "#loc", "loc("))
        and "mhlo.frontend_attributes" not in line
    }
    return found + sorted(ops)


@pytest.mark.parametrize("partition_num", [None, 4], ids=["adaptive", "partitioned"])
def test_the_train_step_exports_for_cuda_and_tpu_without_custom_calls(partition_num):
    columns = adaptive_columns(partition_num)
    state = fc.init_state(columns, OPT, jax.random.key(0))
    raw, labels = features()
    prepared = fc.prepare(raw, columns, size=SIZE)
    assert all(p.buckets is None for p in prepared.values())  # hashed in the step
    text = exported_text(make_step(columns), state, prepared, labels)
    assert "stablehlo.while" in text or "stablehlo.case" in text  # the whole step
    assert offenders(text) == []


def test_the_partitioned_step_on_a_mesh_exports_without_custom_calls():
    columns = adaptive_columns(partition_num=4)
    mesh = Mesh(np.array(jax.devices("cpu")[:4]), ("data",))
    layout = sharding.Layout(mesh, "data")
    state = layout.place(fc.init_state(columns, OPT, jax.random.key(0)), columns)
    raw, labels = features()
    prepared = sharding.prepare(raw, columns, layout, size=SIZE // 4)
    labels = jax.device_put(labels, jax.sharding.NamedSharding(mesh, jax.P("data")))
    text = exported_text(make_step(columns, layout), state, prepared, labels)
    assert "all_to_all" in text  # the exchange between the partitions' owners
    assert offenders(text) == []


def test_the_checks_can_fail():
    # A host callback: export refuses it, and the module text shows it.
    def with_callback(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    x = jnp.ones(3, jnp.float32)
    with pytest.raises(NotImplementedError, match="callback"):
        jax.export.export(jax.jit(with_callback), platforms=PLATFORMS)(x)
    assert offenders(jax.jit(with_callback).lower(x).as_text())
    # A custom call: an eigendecomposition lowers to the platforms' solvers.
    m = jax.ShapeDtypeStruct((4, 4), jnp.float32)
    eigh = jax.export.export(jax.jit(jnp.linalg.eigh), platforms=PLATFORMS)(m)
    assert offenders(eigh.mlir_module())
