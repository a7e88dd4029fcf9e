"""The whole-array path of dense features (`ids._dense`) against the general
path, feature by feature (`_host_ids`, `column.stacking`): the same keys,
buckets, indices, validity and padding, bit for bit, for any ids of any
kind, missing or not, stacked or not; and the same refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptive_jax as aj
from adaptive_jax import feature_column as fc

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ADMIT = aj.EmbeddingVariableOption(filter_option=aj.CounterFilter(2))
INTS = {
    "int64": st.integers(INT64_MIN, INT64_MAX),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "small": st.integers(-1, 99),  # repeats, and -1 (missing)
    "uint64": st.integers(0, 2**64 - 1),  # above int64's max: its bits
}
TEXT = st.text(st.characters(codec="utf-8"), max_size=70)
ASCII = st.text(st.characters(max_codepoint=127), max_size=70)


def categorical(kind: str, key: str, buckets: int | None, dtype: str):
    if kind == "static":
        return fc.categorical_column_with_hash_bucket(key, buckets, dtype)
    if kind == "dynamic":
        return fc.categorical_column_with_embedding(key, dtype, ev_option=ADMIT)
    return fc.categorical_column_with_adaptive_embedding(
        key, buckets, dtype, ev_option=ADMIT
    )


@st.composite
def batches(draw):
    """`(features, columns, size)`: 1-4 dense features of one kind, the
    columns of each or one stacked column."""
    ids = draw(st.sampled_from([*INTS, "U", "U_ascii", "S"]))
    dtype = "string" if ids not in INTS else "int32" if ids == "int32" else "int64"
    count, rows = draw(st.integers(1, 4)), draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["static", "dynamic", "adaptive"]))
    features, columns = {}, []
    for i in range(count):
        if ids in INTS:
            values = draw(st.lists(INTS[ids], min_size=rows, max_size=rows))
            array = np.array(values, np.uint64 if ids == "uint64" else np.int64)
            if draw(st.booleans()) and ids not in ("small", "uint64"):
                array[draw(st.integers(0, rows - 1))] = -1
            if ids in ("int32", "small") and draw(st.booleans()):
                array = array.astype(np.int32 if ids == "int32" else np.int16)
        else:
            text = ASCII if ids != "U" else TEXT
            values = draw(st.lists(text, min_size=rows, max_size=rows))
            array = np.array(values, dtype="U" if ids != "S" else None)
            if ids == "S":
                array = np.array([v.encode() for v in values], dtype="S")
        if draw(st.booleans()):
            array = array.reshape(rows, 1)
        buckets = draw(st.sampled_from([1, 7, 1000, 2**29 - 1]))
        features[f"f{i}"] = array
        columns.append(categorical(kind, f"f{i}", buckets, dtype))
    if count > 1 and draw(st.booleans()):  # the columns of one array, as a reader's
        order = draw(st.permutations(range(count)))
        whole = np.stack([features[f"f{i}"].reshape(rows) for i in order], axis=1)
        for at, i in enumerate(order):
            one = whole[:, at : at + 1]
            features[f"f{i}"] = one if features[f"f{i}"].ndim == 2 else one[:, 0]
    stacked = draw(st.booleans())
    if stacked:
        columns = [fc.stacked_column(columns, "fields")]
    slack = draw(st.sampled_from([None, 0, 3]))
    size = None if slack is None else rows * (count if stacked else 1) + slack
    return features, [fc.embedding_column(c, 2) for c in columns], size


def general(features):
    """The same features as lists of their rows (numpy scalars or rows): the
    general path takes them, as the same dense arrays."""
    return {k: list(v) for k, v in features.items()}


def assert_same(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        a, b = got[name], expected[name]
        assert a.hash_bucket_size == b.hash_bucket_size, name
        assert (a.buckets is None) == (b.buckets is None), name
        if b.buckets is not None:
            assert np.asarray(a.buckets).dtype == np.int32
            assert np.array_equal(a.buckets, b.buckets), name
        assert a.to_dynamic is None and b.to_dynamic is None
        x, y = a.ids, b.ids
        assert (x.batch_size, x.strings) == (y.batch_size, y.strings), name
        assert np.array_equal(x.dense_shape, y.dense_shape), name
        for field in ("indices", "valid"):
            assert np.array_equal(getattr(x, field), getattr(y, field)), (name, field)
            assert np.asarray(getattr(x, field)).dtype == getattr(y, field).dtype
        assert np.array_equal(x.values.hi, y.values.hi), name
        assert np.array_equal(x.values.lo, y.values.lo), name
        assert x.weights is None and y.weights is None


@settings(max_examples=150, deadline=None)
@given(batches(), st.sampled_from(["host", "device"]))
def test_dense_features_as_the_general_path(batch, int_buckets):
    features, columns, size = batch
    expected = fc.prepare(
        general(features), columns, size=size, int_buckets=int_buckets
    )
    got = fc.prepare(features, columns, size=size, int_buckets=int_buckets)
    assert_same(got, expected)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 5),
    st.integers(1, 24),
    st.sampled_from(["U", "S"]),
    st.sampled_from(["in order", "shuffled", "gap", "1-d"]),
    st.randoms(use_true_random=False),
)
def test_a_stacked_column_of_one_arrays_columns_as_the_general_path(
    count, rows, kind, layout, random
):
    """A reader's batch: the members are columns of one `[rows, F]` array,
    hashed in place (in order) or copied (out of order, or a column between
    them): the same ids either way."""
    words = ["", "a", "68fd1e64", "é" * 9, "x" * 40]
    width = count + (layout == "gap")
    text = [[random.choice(words) for _ in range(width)] for _ in range(rows)]
    whole = np.array(text, dtype="U")
    if kind == "S":
        whole = np.char.encode(whole, "utf-8")
    members = list(range(count))
    if layout == "shuffled":
        random.shuffle(members)
    elif layout == "gap":
        members = [m + (m > 0) for m in members]
    features = {f"f{i}": whole[:, m : m + 1] for i, m in enumerate(members)}
    if layout == "1-d":
        features = {k: v[:, 0] for k, v in features.items()}
    members = [categorical("adaptive", k, 7, "string") for k in features]
    columns = [fc.embedding_column(fc.stacked_column(members, "fields"), 2)]
    assert_same(fc.prepare(features, columns), fc.prepare(general(features), columns))


def test_a_batch_of_both_paths_and_both_kinds():
    ints = [categorical("adaptive", k, 5, "int64") for k in ("a", "b")]
    strings = [categorical("static", k, 9, "string") for k in ("s", "t")]
    columns = [fc.embedding_column(c, 2) for c in ints + strings]
    features = {
        "a": np.array([3, -1, 5]),
        "b": [[1, 2], [], [3]],  # ragged: the general path
        "s": np.array(["x", "", "yz"]),
        "t": np.array([b"p", b"q", b""]),
    }
    plain = {k: v if k == "b" else list(v) for k, v in features.items()}
    for int_buckets in ("host", "device"):
        got = fc.prepare(features, columns, int_buckets=int_buckets)
        assert_same(got, fc.prepare(plain, columns, int_buckets=int_buckets))


BAD = {
    "int32_range": (np.array([1, 2**31]), "int32", "outside the int32 range"),
    "strings_for_ints": (np.array(["a", "b"]), "int64", "its ids are strings"),
    "ints_for_strings": (np.array([1, 2]), "string", "its ids are integers"),
    "floats": (np.array([1.5, 2.0]), "int64", "float64"),
    "width_2": (np.array([[1, 2], [3, 4]]), "int32", None),
}


@pytest.mark.parametrize("stacked", [False, True], ids=["column", "stacked"])
@pytest.mark.parametrize(("values", "dtype", "match"), BAD.values(), ids=list(BAD))
def test_dense_features_refused_as_on_the_general_path(values, dtype, match, stacked):
    members = [categorical("static", k, 4, dtype) for k in ("c", "d")]
    columns = [fc.stacked_column(members, "cd")] if stacked else members
    columns = [fc.embedding_column(c, 2) for c in columns]
    good = np.array([1, 2] if dtype != "string" else ["a", "b"])
    features = {"c": values, "d": good.reshape(-1, 1)[: values.shape[0]]}
    if match is None:  # accepted: the general path's ids
        assert_same(
            fc.prepare(features, columns), fc.prepare(general(features), columns)
        )
        return
    for form in (features, general(features)):
        with pytest.raises((ValueError, TypeError), match=match) as error:
            fc.prepare(form, columns)
        assert "'c'" in str(error.value)


def test_a_size_below_the_ids_names_the_column():
    columns = [fc.embedding_column(categorical("static", "c", 4, "int64"), 2)]
    with pytest.raises(ValueError, match="column 'c'.*more than size=2"):
        fc.prepare({"c": np.arange(3)}, columns, size=2)


def test_stacked_members_of_several_ids_an_example_as_ragged_lists():
    # [batch, width] members take the stacked column's other whole-array pass
    members = [categorical("adaptive", k, n, "int64") for k, n in (("a", 5), ("b", 8))]
    columns = [fc.embedding_column(fc.stacked_column(members, "ab"), 2)]
    features = {"a": np.array([[1, 2], [3, 4], [5, 6]]), "b": np.array([7, 8, 9])}
    ragged = {"a": features["a"].tolist(), "b": [[v] for v in features["b"].tolist()]}
    for int_buckets in ("host", "device"):
        got = fc.prepare(features, columns, int_buckets=int_buckets)
        assert_same(got, fc.prepare(ragged, columns, int_buckets=int_buckets))
