"""TensorFlow's bucket of an int id inside jit (`ids._device_fingerprint`), bit
for bit against farmhash's Fingerprint64 of `str(id)` one id at a time (the
`farmhash` module: TensorFlow's), Python's `%`, and TensorFlow's known
answers; with x64 off and on. And the step's buckets of int columns prepared
without them (`int_buckets="device"`) against the host's; and training and
serving with either, equal."""

import json
import pathlib

import farmhash
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids as ids_lib
from adaptive_jax import serving
from adaptive_jax.column import stacking
from adaptive_jax.ids import _device_fingerprint
from adaptive_jax.persist import export

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KNOWN = json.loads(
    (pathlib.Path(__file__).parent / "data/hash_tf_known_answers.json").read_text()
)
# Every length of an int64's string (1-20 bytes, "-" included) at its bounds.
EDGES = [s * (10**k + d) for k in range(19) for d in (-1, 0, 1) for s in (1, -1)] + [
    0,
    INT64_MIN,
    INT64_MIN + 1,
    INT64_MAX,
    INT64_MAX - 1,
]

_fingerprints = jax.jit(_device_fingerprint.fingerprint64)
_buckets = jax.jit(_device_fingerprint.buckets, static_argnums=1)
_modulo = jax.jit(_device_fingerprint.modulo, static_argnums=1)


def reference(values) -> list[int]:
    return [farmhash.Fingerprint64(str(v)) for v in values]


def on_device(values) -> list[int]:
    ids = ids_lib.from_numpy(np.asarray(values, np.int64))
    return ids_lib.to_numpy(_fingerprints(ids)).view(np.uint64).tolist()


@pytest.fixture(params=[False, True], ids=["x64_off", "x64_on"])
def x64(request):
    with jax.enable_x64(request.param):
        yield request.param


def test_every_length_and_sign_at_its_bounds(x64):
    assert on_device(EDGES) == reference(EDGES)


def test_every_group_of_four_digits():
    # Each of the five groups' digits by multiply-and-shift: every value of
    # a group, in the lowest group and in the highest.
    groups = np.arange(10_000, dtype=np.int64)
    values = np.concatenate([groups, groups * 10**16 + 1234, -groups - 10**12])
    assert on_device(values) == reference(values.tolist())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(INT64_MIN, INT64_MAX), min_size=1, max_size=64))
def test_any_int64_ids(values):
    assert on_device(values) == reference(values)


@pytest.mark.parametrize("num_buckets", [1, 100, 1_000_003])
def test_tensorflow_known_answers(num_buckets, x64):
    ids = ids_lib.from_numpy(np.array(KNOWN["ints"], np.int64))
    buckets = _buckets(ids, (num_buckets,), None)
    assert buckets.dtype == np.int32
    assert np.asarray(buckets).tolist() == KNOWN[f"ints_{num_buckets}"]


def test_tensorflow_known_keys_modulo_int64_max():
    prints = np.array(on_device(KNOWN["ints"]), np.uint64)
    keys = (prints % np.uint64(INT64_MAX)).tolist()
    assert keys == KNOWN["ints_9223372036854775807"]


DIVISORS = [1, 2, 3, 7, 10, 65_535, 65_536, 1_000_003, 2**30 - 1, 2**30]
DIVISORS += [2**30 + 1, 2**31 - 1, 2**31]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=32),
    st.sampled_from(DIVISORS),
)
def test_modulo_of_any_uint64_by_one_divisor(values, divisor):
    words = ids_lib.split(np.array(values, np.uint64))
    got = _modulo(words, (divisor,), None)
    assert np.asarray(got).tolist() == [v % divisor for v in values]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3)),
        min_size=1,
        max_size=32,
    ),
    st.lists(st.sampled_from(DIVISORS), min_size=4, max_size=4),
)
def test_modulo_by_each_values_own_divisor(pairs, divisors):
    values = np.array([v for v, _ in pairs], np.uint64)
    which = np.array([w for _, w in pairs], np.int32)
    got = _modulo(ids_lib.split(values), tuple(divisors), which)
    expected = [int(v) % divisors[w] for v, w in pairs]
    assert np.asarray(got).tolist() == expected


def test_modulo_rejects_divisors_beyond_two_to_the_31():
    with pytest.raises(ValueError, match="divisors must be in"):
        _device_fingerprint.modulo(ids_lib.split(np.arange(2)), (2**31 + 1,), None)


def _columns(stacked: bool):
    admit = aj.EmbeddingVariableOption(filter_option=aj.CounterFilter(2))
    columns = [
        fc.categorical_column_with_adaptive_embedding(k, n, "int64", ev_option=admit)
        for k, n in (("a", 7), ("b", 1_000_003), ("c", 2**31 - 1 - 1_000_010))
    ]
    if stacked:
        return [fc.embedding_column(fc.stacked_column(columns, "abc"), 4)]
    return [fc.embedding_column(c, 4) for c in columns]


@pytest.mark.parametrize("stacked", [False, True], ids=["columns", "stacked"])
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "ragged"])
def test_the_step_finds_the_hosts_buckets(stacked, dense, x64):
    rng = np.random.default_rng(int(stacked) + 2 * int(dense))
    values = rng.choice(np.array(EDGES), size=(24, 1))
    values[3] = -1  # missing
    features = {k: values[rng.permutation(24)] for k in "abc"}
    if not dense:  # the general path: a ragged row of two ids, one empty
        features = {
            k: [[int(v[0]), int(v[0]) + 1] for v in f[:-1]] + [[]]
            for k, f in features.items()
        }
    columns = _columns(stacked)
    host = fc.prepare(features, columns, int_buckets="host")
    device = fc.prepare(features, columns)
    for column in columns:
        categorical = column.categorical_column
        assert device[column.name].buckets is None
        assert host[column.name].buckets is not None
        found = jax.jit(stacking.step_buckets, static_argnums=(1, 2))(
            device[column.name], categorical.hash_bucket_size, categorical.members
        )
        expected = np.asarray(host[column.name].buckets)
        assert np.asarray(found.buckets).tolist() == expected.tolist()
        host_words = host[column.name].ids.values
        assert np.array_equal(device[column.name].ids.values.hi, host_words.hi)
        assert np.array_equal(device[column.name].ids.values.lo, host_words.lo)


def test_prepare_names_a_bad_int_buckets_option():
    with pytest.raises(ValueError, match="int_buckets must be one of"):
        fc.prepare({"a": np.arange(4)}, _columns(False)[:1], int_buckets="gpu")


def _small_columns(stacked: bool):
    admit = aj.EmbeddingVariableOption(capacity=32, filter_option=aj.CounterFilter(2))
    columns = [
        fc.categorical_column_with_adaptive_embedding(k, n, "int64", ev_option=admit)
        for k, n in (("a", 7), ("b", 1_009), ("c", 65_537))
    ]
    if stacked:
        return [fc.embedding_column(fc.stacked_column(columns, "abc"), 4)]
    return [fc.embedding_column(c, 4) for c in columns]


def _train_and_serve(columns, batches, int_buckets):
    """Embeddings of two training steps and of serving the export, with int
    ids' buckets where `int_buckets` says."""
    opt = aj.optim.ftrl(0.5)

    @jax.jit
    def step(state, features):
        emb, state, res = fc.input_layer(features, columns, state, optimizer=opt)
        d_emb = jax.grad(lambda e: jnp.sum(jnp.sin(e)))(emb)
        return emb, fc.apply_gradients(state, res, d_emb, columns, opt)

    state, seen = fc.init_state(columns, opt, jax.random.key(0)), []
    for raw in batches:
        emb, state = step(state, fc.prepare(raw, columns, int_buckets=int_buckets))
        seen.append(np.asarray(emb))
    built = serving.build(export.export(state, columns))
    prepared = serving.prepare(built, batches[-1], int_buckets=int_buckets)
    seen.append(np.asarray(jax.jit(serving.lookup)(built, prepared)))
    return seen, state


@pytest.mark.parametrize("stacked", [False, True], ids=["columns", "stacked"])
def test_training_and_serving_as_with_the_hosts_buckets(stacked, x64):
    # extremes, negatives and small ids, repeated so that some are admitted
    values = np.array(EDGES[:24] * 2, np.int64).reshape(-1, 1)
    batches = [{k: np.roll(values, i + j) for j, k in enumerate("abc")} for i in (0, 5)]
    columns = _small_columns(stacked)
    device, device_state = _train_and_serve(columns, batches, "device")
    host, host_state = _train_and_serve(columns, batches, "host")
    for got, expected in zip(device, host, strict=True):
        assert np.array_equal(got, expected)
    assert len(jax.tree.leaves(device_state)) == len(jax.tree.leaves(host_state))
    for got, expected in zip(
        jax.tree.leaves(device_state), jax.tree.leaves(host_state), strict=True
    ):
        assert np.array_equal(_raw(got), _raw(expected))


def _raw(leaf):
    """A state leaf as numpy (a PRNG key as its data)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)
