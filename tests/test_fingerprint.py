"""The vectorized Fingerprint64, bit for bit against farmhash's, one value at a
time (the `farmhash` module of the `cityhash` package: TensorFlow's
Fingerprint64), over every length class of the algorithm, every byte value,
unicode, and int64 ids through their decimal strings."""

import farmhash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_jax.ids import _decimal, _fingerprint

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def reference(values) -> list[int]:
    """farmhash's Fingerprint64 of each value; ints through `str`, as TF."""
    return [
        farmhash.Fingerprint64(v if isinstance(v, str | bytes) else str(v))
        for v in values
    ]


def fingerprints(values) -> list[int]:
    return _fingerprint.fingerprint64(values).tolist()


@pytest.fixture(params=[3, 8192], ids=["chunks_of_3", "chunks_of_8192"])
def chunk(request, monkeypatch):
    """Hash in chunks of this many values (3: every batch spans chunks)."""
    monkeypatch.setattr(_fingerprint, "CHUNK", request.param)
    return request.param


# Every length of every class: 0-3, 4-7, 8-16, 17-32, 33-64, and the loop over
# 64-byte chunks with 1 to 64 bytes left (65-200), and longer strings.
LENGTHS = [*range(0, 201), 255, 256, 257, 1000, 4096]


def random_bytes(rng: np.random.Generator, length: int, nul: bool) -> bytes:
    low = 0 if nul else 1
    return rng.integers(low, 256, length, dtype=np.uint8).tobytes()


def test_bytes_of_every_length_in_one_batch(chunk):
    rng = np.random.default_rng(0)
    values = [random_bytes(rng, n, nul=True) for n in LENGTHS for _ in range(3)]
    assert fingerprints(values) == reference(values)


def test_each_length_alone_hashes_in_its_own_class():
    rng = np.random.default_rng(1)
    for n in LENGTHS:
        values = [random_bytes(rng, n, nul=True) for _ in range(4)]
        assert fingerprints(values) == reference(values), n


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_value_at_every_position_of_each_class(byte):
    # The byte alone, and at the first, middle and last position of strings
    # of the classes' bounds, the rest random.
    rng = np.random.default_rng(byte)
    values = [bytes([byte])]
    for n in (2, 3, 4, 7, 8, 16, 17, 32, 33, 64, 65, 128, 129):
        for at in (0, n // 2, n - 1):
            value = bytearray(random_bytes(rng, n, nul=True))
            value[at] = byte
            values.append(bytes(value))
    assert fingerprints(values) == reference(values)


def test_a_bytes_array_is_its_bytes_up_to_the_last_non_nul(chunk):
    # numpy drops a bytes value's trailing NULs; the hash is of what remains.
    rng = np.random.default_rng(2)
    values = [random_bytes(rng, n, nul=False) for n in LENGTHS[:130]]
    values += [b"a\x00b", b"\x00\x00x", b""]
    array = np.array(values)
    assert array.dtype.kind == "S"
    assert fingerprints(array) == reference(array.tolist())


def test_a_unicode_array_of_ascii_and_other_text(chunk):
    rng = np.random.default_rng(3)
    ascii_text = [
        "".join(chr(c) for c in rng.integers(1, 128, n)) for n in LENGTHS[:130]
    ]
    other = ["é", "日本語テキスト" * 5, "😀", "a😀" * 40, "x" * 63 + "é", "a\x00b"]
    for values in (ascii_text, ascii_text + other, other):
        array = np.array(values)
        assert fingerprints(array) == reference(values)
        assert fingerprints(values) == reference(values)  # as a list


def test_hex_ids_of_the_ctr_data():
    rng = np.random.default_rng(4)
    values = [f"{x:08x}" for x in rng.integers(0, 2**32, 20_000)]
    assert fingerprints(np.array(values)) == reference(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_any_bytes(values):
    assert fingerprints(values) == reference(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=40))
def test_any_text_as_a_list_and_as_an_array(values):
    assert fingerprints(values) == reference(values)
    if values:
        array = np.array(values)  # drops trailing NULs, as a numpy str does
        assert fingerprints(array) == reference(array.tolist())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=70), st.integers(INT64_MIN, INT64_MAX)), max_size=20
    )
)
def test_strings_and_ints_mixed_in_a_list(values):
    assert fingerprints(values) == reference(values)


# Int ids: their decimal strings, as `str` writes them.

EDGES = [0, 1, -1, 9, -9, 10, -10, INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1]
EDGES += [s * (10**k + d) for k in range(1, 19) for d in (-1, 0, 1) for s in (1, -1)]


def test_int64_edges_and_every_number_of_digits(chunk):
    values = np.array(EDGES, np.int64)
    assert fingerprints(values) == reference(EDGES)
    assert fingerprints(EDGES) == reference(EDGES)  # as Python ints


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=60))
def test_any_int64(values):
    assert fingerprints(np.array(values, np.int64)) == reference(values)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_other_integer_dtypes_hash_their_values(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    values = rng.integers(info.min, info.max, 500, dtype=dtype, endpoint=True)
    values = np.concatenate([values, np.array([info.min, info.max, 0], dtype)])
    assert fingerprints(values) == reference(values.tolist())


def test_random_int64_ids_of_every_magnitude():
    rng = np.random.default_rng(6)
    scales = 10 ** rng.integers(0, 19, 20_000)
    values = rng.integers(-(2**62), 2**62, 20_000) // (2**62 // scales + 1)
    values = np.concatenate([values, rng.integers(INT64_MIN, INT64_MAX, 5000)])
    assert fingerprints(values) == reference(values.tolist())


def test_shapes_and_empty_inputs_keep_their_shape():
    assert _fingerprint.fingerprint64(np.zeros((0, 3), np.int64)).shape == (0, 3)
    grid = np.arange(6).reshape(2, 3)
    want = reference(range(6))
    assert fingerprints(grid) == [want[:3], want[3:]]


def test_a_lone_surrogate_raises_as_farmhash_does():
    with pytest.raises(UnicodeEncodeError):
        farmhash.Fingerprint64("\ud800")
    with pytest.raises(UnicodeEncodeError):
        _fingerprint.fingerprint64(np.array(["ok", "\ud800"]))


# The decimal digits' divisions by multiply-and-shift, over every value they see.


def test_the_digit_divisions_are_exact_over_their_ranges():
    x = np.arange(10_000, dtype=np.uint64)
    assert np.array_equal((x * np.uint64(10486)) >> np.uint64(20), x // np.uint64(100))
    x = np.arange(100, dtype=np.uint64)
    assert np.array_equal((x * np.uint64(103)) >> np.uint64(10), x // np.uint64(10))


def test_eight_digits_writes_each_digit_in_its_byte():
    rng = np.random.default_rng(7)
    x = np.concatenate([[0, 1, 10**8 - 1, 10**7], rng.integers(0, 10**8, 5000)])
    words = _decimal.eight_digits(x.astype(np.uint64))
    got = words.astype("<u8").view(np.uint8).reshape(-1, 8)
    want = np.array([[int(c) for c in f"{v:08d}"] for v in x.tolist()])
    assert np.array_equal(got, want)
