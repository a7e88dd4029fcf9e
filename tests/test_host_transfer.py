"""No host round trip inside the training step, with x64 off and on.

The step a user writes: `prepare` on the host, outside the step; inside one
jitted function with the state donated, `input_layer`, the gradient of a small
loss with respect to the embeddings, `apply_gradients` and `maybe_evict`. The
columns: an adaptive one with admission (`CounterFilter`) and eviction
(`GlobalStepEvict`), and a plain dynamic one with admission, both of int64 ids
(negative ones, and ones above 2**32). TPUs have no native int64, so the same
step must hold without x64 as with it.

Three checks, each over x64 off and on: the traced step and its compiled program
hold no host callback and no host transfer; 20 steps of varying batches run
under transfer guards; and they compile once. On CPU, JAX reads an array on the
host without a copy, so its device-to-host guard cannot fire there (it does on
GPU and TPU); but a host callback running on CPU hands its result back with a
host-to-device transfer, which the host-to-device guard refuses
(`test_the_checks_can_fail` shows each check catching a callback).
"""

import contextlib
import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids, optim
from adaptive_jax.column import initializers

CAPACITY, BUCKETS, DIM = 64, 16, 4
BATCH, WIDTH, SIZE = 32, 2, 64  # examples, ids per example at most, padded ids
STEPS, EVERY, STEPS_TO_LIVE = 20, 2, 3

X64 = pytest.mark.parametrize("x64", [False, True], ids=["x64_off", "x64_on"])


def make_columns():
    adaptive = fc.categorical_column_with_adaptive_embedding(
        "a",
        BUCKETS,
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=CAPACITY,
            filter_option=aj.CounterFilter(2),
            evict_option=aj.GlobalStepEvict(STEPS_TO_LIVE),
        ),
    )
    plain = fc.categorical_column_with_embedding(
        "d",
        dtype="int64",
        ev_option=aj.EmbeddingVariableOption(
            capacity=CAPACITY, filter_option=aj.CounterFilter(2)
        ),
    )
    init = initializers.random_normal(stddev=0.5)
    columns = [
        fc.embedding_column(adaptive, DIM, "sum", init),
        fc.embedding_column(plain, DIM, "mean", init),
    ]
    return columns, optim.ftrl(0.1)


def make_step(columns, opt, traces=None):
    """The user's step, not jitted; `traces` counts the times its body runs."""
    w = np.linspace(-1.0, 1.0, 2 * DIM, dtype=np.float32)

    def step(state, prepared, labels):
        if traces is not None:
            traces.append(1)
        emb, state, residuals = fc.input_layer(prepared, columns, state, optimizer=opt)

        def loss_fn(emb):
            logits = emb @ w
            return jnp.mean(jax.nn.softplus(logits) - labels * logits)

        loss, d_emb = jax.value_and_grad(loss_fn)(emb)
        state = fc.apply_gradients(state, residuals, d_emb, columns, opt)
        state = fc.maybe_evict(state, columns, opt, every=EVERY)
        return state, loss

    return step


def step_ids(i, rng):
    """Step `i`'s int64 ids: hot ones in every step (one twice), warm ones for
    three steps each (admitted at the second, evicted once left behind), and
    new cold ones (seen once: refused), of a varying number."""
    hot = -(2**40) - 7 * np.arange(6, dtype=np.int64) - 2
    hot = np.concatenate([hot, hot[:1], [5, 5 + 2**32]])  # same low word, two ids
    warm = 2**33 + 3 * np.arange(2 * i, 2 * i + 6, dtype=np.int64)
    cold_n = 8 + (5 * i) % 13
    cold = (2**62 + 1000 * i + np.arange(cold_n, dtype=np.int64)) * (-1) ** i
    values = np.concatenate([hot, warm, cold]).astype(np.int64)
    rng.shuffle(values)
    dense = np.full(BATCH * WIDTH, -1, np.int64)  # -1: no id
    dense[rng.choice(BATCH * WIDTH, values.size, replace=False)] = values
    return dense.reshape(BATCH, WIDTH)


def batches(columns, size=SIZE, steps=STEPS):
    """The steps' prepared batches and labels, on the device, made on the host
    in the current x64 mode: with x64 on from int64 JAX arrays, off from int64
    numpy arrays (`prepare` splits both into two uint32 words, `ids.from_numpy`)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(steps):
        dense = step_ids(i, rng)
        feature = dense
        if jax.config.jax_enable_x64:
            feature = jnp.asarray(dense)
            assert feature.dtype == jnp.int64
        prepared = fc.prepare({"a": feature, "d": feature}, columns, size=size)
        keys = prepared["a_embedding"].ids.values
        assert keys.hi.dtype == keys.lo.dtype == jnp.uint32
        valid = np.asarray(prepared["a_embedding"].ids.valid)
        assert sorted(ids.to_numpy(keys)[valid]) == sorted(dense[dense != -1])
        labels = rng.integers(0, 2, BATCH).astype(np.float32)
        out.append((prepared, labels))
    return jax.device_put(out)


def setup(x64):
    assert jax.config.jax_enable_x64 is x64
    columns, opt = make_columns()
    state = fc.init_state(columns, opt, jax.random.key(0))
    return columns, opt, state, batches(columns)


# What counts as a host round trip.


def primitives(jaxpr, depth=0):
    """(primitive name, depth, params) of every equation of a jaxpr and of the
    jaxprs in its equations' params (cond branches, scan and while bodies,
    pjit, custom_jvp / custom_vjp calls, shard_map), recursively."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)  # a ClosedJaxpr's
    for eqn in jaxpr.eqns:
        yield eqn.primitive.name, depth, eqn.params
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                if isinstance(sub, jax.extend.core.Jaxpr | jax.extend.core.ClosedJaxpr):
                    yield from primitives(sub, depth + 1)


def host_primitives(closed):
    """The equations of a traced function that call or move data to the host."""
    found = []
    for name, _, params in primitives(closed):
        if "callback" in name or "host" in name or "feed" in name:
            found.append(name)
        elif name == "device_put" and "host" in str(params):  # memory-kind offload
            found.append(f"{name} {params}")
    return found


_HOST_OPS = re.compile(
    r"stablehlo\.(send|recv|infeed|outfeed)\b"  # StableHLO
    r"|\b(send|recv|send-done|recv-done|infeed|outfeed)\("  # HLO
    r"|is_host_transfer|pinned_host|unpinned_host",  # host transfers, offloading
)
_CUSTOM_CALL = re.compile(r'custom_call @(\w+)|custom_call_target="([^"]+)"')


def host_ops(text):
    """The custom calls to host callbacks and the host transfers in a lowered
    (StableHLO) or compiled (HLO) program's text."""
    targets = {a or b for a, b in _CUSTOM_CALL.findall(text)}
    found = sorted(t for t in targets if "callback" in t or "host" in t)
    return found + sorted({m.group(0) for m in _HOST_OPS.finditer(text)})


_GUARDS = ("jax_transfer_guard_device_to_host", "jax_transfer_guard_host_to_device")


@contextlib.contextmanager
def no_transfers():
    """Refuses every transfer between host and device, implicit or explicit, in
    every thread: a host callback may run on a thread of XLA's, which the
    calling thread's context managers do not reach, so the process's default
    too, restored after."""
    saved = {name: getattr(jax.config, name) for name in _GUARDS}
    try:
        for name in _GUARDS:
            jax.config.update(name, "disallow_explicit")
        with (
            jax.transfer_guard_device_to_host("disallow_explicit"),
            jax.transfer_guard_host_to_device("disallow_explicit"),
        ):
            yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


# 1. No host callback in the traced step nor in its program.


@X64
def test_the_step_traces_and_compiles_without_host_callbacks(x64):
    with jax.enable_x64(x64):
        columns, opt, state, data = setup(x64)
        step = make_step(columns, opt)
        closed = jax.make_jaxpr(step)(state, *data[0])
        seen = list(primitives(closed))
        names = {name for name, _, _ in seen}
        # The walk reaches the eviction pass inside `maybe_evict`'s cond, and
        # the lookup's loops inside the nested jits.
        assert {"cond", "while", "scatter-add"} <= names, sorted(names)
        assert max(depth for _, depth, _ in seen) >= 3
        assert host_primitives(closed) == []
        # The state is the same without x64 as with it: 32 bits at most, and
        # the step gives back what it took (so every buffer is donated).
        state_avals = [jax.typeof(leaf) for leaf in jax.tree.leaves(state)]
        assert all(aval.dtype.itemsize <= 4 for aval in state_avals)
        assert closed.out_avals[: len(state_avals)] == state_avals

        lowered = jax.jit(step, donate_argnums=0).lower(state, *data[0])
        assert host_ops(lowered.as_text()) == []
        assert host_ops(lowered.compile().as_text()) == []


# 2. No transfer between host and device in 20 steps.


@X64
def test_twenty_steps_run_under_transfer_guards(x64):
    with jax.enable_x64(x64):
        columns, opt, state, data = setup(x64)
        step = jax.jit(make_step(columns, opt), donate_argnums=0)
        losses = []
        with no_transfers():
            for prepared, labels in data:
                state, loss = step(state, prepared, labels)
                losses.append(loss)
            jax.block_until_ready((state, losses))  # every step ran in the guard
            # The guards are on: a transfer now is refused.
            with pytest.raises(Exception, match="Disallowed host-to-device"):
                jax.device_put(np.ones(3, np.float32))
            if jax.default_backend() != "cpu":  # CPU reads arrays without a copy
                with pytest.raises(Exception, match="Disallowed device-to-host"):
                    jax.device_get(losses[-1])
        losses = np.asarray(jax.device_get(losses))
        assert losses.shape == (STEPS,) and np.all(np.isfinite(losses))
        summary = fc.summary(state)
        adaptive, plain = summary["a_embedding"], summary["d_embedding"]
        assert int(state["a_embedding"].step) == STEPS
        # Admission, promotion and eviction happened, so the steps did the work.
        assert adaptive["promotions"] > 0 and adaptive["refused_admissions"] > 0
        assert adaptive["evicted_steps"] > 0
        assert adaptive["served_static_total"] > 0
        assert adaptive["served_dynamic_total"] > 0
        assert plain["promotions"] > 0 and plain["refused_admissions"] > 0


# 3. One compile for the 20 steps.


@X64
def test_twenty_steps_compile_once(x64):
    with jax.enable_x64(x64):
        columns, opt, state, data = setup(x64)
        traces = []
        step = jax.jit(make_step(columns, opt, traces), donate_argnums=0)
        for prepared, labels in data:
            state, _ = step(state, prepared, labels)
            assert (step._cache_size(), len(traces)) == (1, 1)
        assert int(state["a_embedding"].step) == STEPS
        if not x64:  # The check can fail (once is enough: a compile more).
            (bigger,) = batches(columns, size=2 * SIZE, steps=1)
            state, _ = step(state, *bigger)  # another padded size compiles again
            assert (step._cache_size(), len(traces)) == (2, 2)


# The checks can fail.


def test_the_checks_can_fail():
    """Each check catches a host callback inside a cond inside a jit: the jaxpr
    walk, the program texts, and the host-to-device guard at run time."""

    def branch(x):
        y = jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return io_callback(np.cos, jax.ShapeDtypeStruct(x.shape, x.dtype), y)

    @jax.jit
    def inner(x):
        return jax.lax.cond(x[0] > 0, branch, lambda x: x, x)

    def fn(x):
        return inner(x) + 1

    x = jnp.ones(3, jnp.float32)
    assert host_primitives(jax.make_jaxpr(fn)(x)) == ["pure_callback", "io_callback"]
    lowered = jax.jit(fn).lower(x)
    for text in (lowered.as_text(), lowered.compile().as_text()):
        assert any("python" in op and "callback" in op for op in host_ops(text))
    fn_jit = jax.jit(fn)
    fn_jit(x).block_until_ready()
    refused = "Disallowed (host-to-device|device-to-host)"
    with pytest.raises(Exception, match=refused), no_transfers():
        fn_jit(x).block_until_ready()
