"""The Criteo reader and the synthetic generator, against each other and against
a reference parser written from the format's definition."""

import dataclasses
import gzip
import json
import re
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_jax import data, metrics
from adaptive_jax.data import _click_model, synthetic

NUM_EXAMPLES = 3_000  # in the train split
NUM_TEST = 1_000
SEED = 7
# Small vocabularies, so that a test can list every late id.
SMALL_SPEC = data.SyntheticSpec(
    vocabulary_sizes=(50, 20_000) * 13,
    zipf_exponent=1.2,  # one law for all: late ranks are drawn in every column
    late_fraction=0.2,
    late_start=0.5,
    late_min_vocabulary=1_000,
)


def reference(fields: list[str]) -> tuple | None:
    """One good line's fields as (label, dense, dense missing, categorical),
    from the format's definition; None if the line is malformed."""
    if len(fields) != 40 or fields[0] not in ("0", "1"):
        return None
    if any("\x00" in f for f in fields):  # no Criteo value holds a NUL byte
        return None
    integers = fields[1:14]
    if not all(
        f == "" or re.fullmatch(r"-?[0-9]{1,17}|[0-9]{18}", f) for f in integers
    ):
        return None
    dense = [np.float32(np.int64(f)) if f else np.float32(0) for f in integers]
    return float(fields[0]), dense, [f == "" for f in integers], fields[14:]


def as_rows(batches: list[data.Batch]) -> list[tuple]:
    """The batches' examples in the form `reference` gives them."""
    rows = []
    for b in batches:
        for i in range(b.size):
            categorical = [
                str(b.categorical[c][i, 0]) for c in data.CATEGORICAL_COLUMNS
            ]
            rows.append(
                (
                    float(b.labels[i]),
                    b.dense[i].tolist(),
                    b.dense_missing[i].tolist(),
                    categorical,
                )
            )
    return rows


def write_lines(path, lines: list[list[str]]):
    path.write_bytes("".join("\t".join(f) + "\n" for f in lines).encode())
    return path


def good_line(label: str = "1", value: str = "7") -> list[str]:
    return [label, value, "-3"] + [""] * 11 + [f"{i:08x}" for i in range(26)]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A small generated set: its files and metadata."""
    directory = tmp_path_factory.mktemp("synthetic")
    meta = synthetic.generate(
        directory, num_train=NUM_EXAMPLES, num_test=NUM_TEST, seed=SEED
    )
    return data.DatasetFiles(directory), meta


def read_labels(path) -> np.ndarray:
    return np.concatenate([b.labels for b in data.CriteoReader(path, batch_size=999)])


# Reading generated data


def test_reads_every_generated_line_in_batches_of_the_right_shapes(generated):
    files, meta = generated
    reader = data.CriteoReader(files.train, batch_size=512)
    batches = list(reader)
    assert [b.size for b in batches] == [512] * 5 + [440]
    assert reader.examples == NUM_EXAMPLES and reader.malformed == 0
    batch = batches[0]
    assert batch.labels.shape == (512,) and batch.labels.dtype == np.float32
    assert batch.dense.shape == (512, 13) and batch.dense.dtype == np.float32
    assert batch.dense_missing.shape == (512, 13) and batch.dense_missing.dtype == bool
    assert list(batch.categorical) == list(data.CATEGORICAL_COLUMNS)
    for values in batch.categorical.values():
        assert values.shape == (512, 1) and values.dtype.kind == "U"
    labels = np.concatenate([b.labels for b in batches])
    assert labels.mean() == pytest.approx(meta["train"]["ctr"], abs=1e-9)
    assert abs(labels.mean() - meta["train"]["mean_probability"]) < 0.03
    assert set(np.unique(labels).tolist()) == {0.0, 1.0}


def test_reader_agrees_with_the_reference_parser_on_generated_data(generated):
    files, _ = generated
    lines = [line.split("\t") for line in files.train.read_text().splitlines()]
    want = [reference(fields) for fields in lines]
    got = as_rows(list(data.CriteoReader(files.train, batch_size=1000)))
    assert got == want


def test_missing_values_are_zero_and_flagged(generated):
    files, meta = generated
    batch = next(iter(data.CriteoReader(files.train, batch_size=NUM_EXAMPLES)))
    rates = batch.dense_missing.mean(axis=0)
    np.testing.assert_allclose(rates, meta["spec"]["dense_missing_rates"], atol=0.04)
    assert (batch.dense[batch.dense_missing] == 0).all()
    want = meta["spec"]["categorical_missing_rates"][21]
    assert (batch.categorical["C22"] == "").mean() == pytest.approx(want, abs=0.04)
    assert (batch.categorical["C1"] != "").all()
    assert (batch.dense[:, 1] < 0).any()  # I2 goes below zero, as in Criteo


def test_drop_remainder_and_limit(generated):
    files, _ = generated
    sizes = lambda **options: [  # noqa: E731
        b.size for b in data.CriteoReader(files.train, batch_size=300, **options)
    ]
    assert sizes(limit=1000) == [300, 300, 300, 100]
    assert sizes(limit=1000, drop_remainder=True) == [300, 300, 300]
    assert sizes(drop_remainder=True) == [300] * 10
    assert sizes(limit=0) == []
    assert sizes(limit=10**9) == [300] * 10


def test_limit_and_skip_lines_split_a_stream_in_two(generated):
    files, _ = generated
    whole = as_rows(list(data.CriteoReader(files.train, batch_size=700)))
    head = as_rows(list(data.CriteoReader(files.train, batch_size=700, limit=1234)))
    tail = data.CriteoReader(files.train, batch_size=700, skip_lines=1234)
    assert head + as_rows(list(tail)) == whole
    assert tail.examples == NUM_EXAMPLES - 1234


def test_reads_a_directory_of_files_in_natural_order(generated, tmp_path):
    files, _ = generated
    lines = files.train.read_bytes().splitlines(keepends=True)
    for number, part in ((2, lines[:1000]), (10, lines[1000:2500])):
        (tmp_path / f"part-{number}").write_bytes(b"".join(part))
    with gzip.open(tmp_path / "part-11.gz", "wb") as out:
        out.write(b"".join(lines[2500:]))
    (tmp_path / "part-1.meta.json").write_text("{}")  # side and hidden files
    (tmp_path / ".part-0.txt").write_text("not\tdata\n")
    (tmp_path / "_SUCCESS").write_text("")
    reader = data.CriteoReader(tmp_path, batch_size=512)
    got = as_rows(list(reader))
    assert [f.name for f in reader.files] == ["part-2", "part-10", "part-11.gz"]
    assert got == as_rows(list(data.CriteoReader(files.train, batch_size=512)))


def test_reads_gzip_whatever_the_file_name(generated, tmp_path):
    files, _ = generated
    (tmp_path / "day_0").write_bytes(gzip.compress(files.train.read_bytes()))
    got = as_rows(list(data.CriteoReader(tmp_path / "day_0", batch_size=999)))
    assert got == as_rows(list(data.CriteoReader(files.train, batch_size=999)))


def test_reads_crlf_lines_and_a_last_line_without_newline(tmp_path):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"\r\n".join("\t".join(good_line(value=v)).encode() for v in "01"))
    rows = as_rows(list(data.CriteoReader(path, batch_size=8)))
    assert rows == [reference(good_line(value=v)) for v in "01"]


# Malformed input


def test_malformed_lines_are_skipped_counted_and_reported(tmp_path):
    path = write_lines(
        tmp_path / "bad.txt",
        [
            good_line(value="1"),
            good_line()[:30],  # too few fields
            good_line(value="2"),
            good_line(value="12a"),  # not an integer
            good_line(label="2"),  # not a label
            [""],  # blank: not an example, not an error
            good_line(value="3"),
        ],
    )
    reader = data.CriteoReader(path, batch_size=2)
    with pytest.warns(data.MalformedLineWarning) as records:
        batches = list(reader)
    messages = [str(r.message) for r in records]
    assert messages == [
        f"{path}:2: skipped: expected 40 tab-separated fields, got 30",
        f"{path}:4: skipped: I1 '12a' is not an integer",
        f"{path}:5: skipped: label '2' is not 0 or 1",
    ]
    assert reader.malformed == 3 and reader.examples == 3
    assert [b.size for b in batches] == [2, 1]
    assert np.concatenate([b.dense[:, 0] for b in batches]).tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("ab\x00", "'ab\\x00'"), ("\x00ab", "'\\x00ab'"), ("a\x00b", "'a\\x00b'")],
    ids=["at_the_end", "at_the_start", "inside"],
)
def test_a_value_with_a_nul_byte_is_not_read_as_another(tmp_path, value, shown):
    """numpy's strings would drop a NUL at the end: `ab\\x00` read as `ab`."""
    line = good_line()
    line[16] = value  # C3
    path = write_lines(tmp_path / "nul.txt", [good_line(), line, good_line()])
    reader = data.CriteoReader(path, batch_size=8)
    with pytest.warns(data.MalformedLineWarning) as records:
        (batch,) = list(reader)
    assert [str(r.message) for r in records] == [
        f"{path}:2: skipped: C3 {shown} holds a NUL byte"
    ]
    assert batch.size == 2 and reader.malformed == 1
    assert batch.categorical["C3"][:, 0].tolist() == ["00000002"] * 2


def test_warnings_stop_at_the_cap_and_then_give_the_total(tmp_path):
    lines = [good_line()] + [good_line(value="x")] * 15 + [good_line()]
    path = write_lines(tmp_path / "noisy.txt", lines)
    reader = data.CriteoReader(path, batch_size=8, max_warnings_per_file=10)
    with pytest.warns(data.MalformedLineWarning) as records:
        assert sum(b.size for b in reader) == 2
    assert len(records) == 11
    assert str(records[-1].message) == (
        f"{path}: skipped 15 malformed lines in all; only the first 10 were reported"
    )
    assert reader.malformed == 15


def test_a_truncated_gzip_file_is_an_error_naming_it(generated, tmp_path):
    files, _ = generated
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(files.train.read_bytes())[:20_000])
    with pytest.raises(ValueError, match=re.escape(f"{path}: corrupt or truncated")):
        list(data.CriteoReader(path, batch_size=100))


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        data.CriteoReader([tmp_path / "nope"], batch_size=1)


def test_no_paths_is_an_error():
    with pytest.raises(ValueError, match="no Criteo files given"):
        data.CriteoReader([], batch_size=1)


def test_a_directory_without_data_files_is_an_error_naming_it(tmp_path):
    (tmp_path / "x.meta.json").write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: no data files")):
        data.CriteoReader(tmp_path, batch_size=1)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 1, "limit": -1}, "limit=-1"),
        ({"batch_size": 1, "skip_lines": -5}, "skip_lines=-5"),
    ],
    ids=["batch_size_0", "limit_negative", "skip_negative"],
)
def test_bad_options_are_errors_naming_them(generated, options, name):
    files, _ = generated
    with pytest.raises(ValueError, match=f"CriteoReader: {name}, must be >="):
        data.CriteoReader(files.train, **options)


# The reader against the reference on random lines

field_text = st.text(
    st.characters(exclude_characters="\t\n\r\x00", exclude_categories=("Cs",)),
    max_size=6,
)
valid_integer = st.one_of(
    st.just(""), st.integers(-(10**17) + 1, 10**18 - 1).map(str), st.just("-007")
)
junk_integer = st.one_of(
    st.sampled_from(["-", "1.5", "+3", " 4", "12a", "--1", "0x1f", "\u0663"]),
    st.sampled_from(["9" * 19, "-" + "9" * 18, "1" * 30]),
    field_text,  # mostly junk; the reference decides
)
category_field = st.one_of(field_text, st.text("ab", min_size=65, max_size=70))


@st.composite
def criteo_line(draw) -> list[str]:
    """A good line, or one with a single defect: a bad integer, a bad label, a
    NUL byte in a field, or a wrong number of fields (one field and empty: a
    blank line)."""
    fields = [
        draw(st.sampled_from(["0", "1"])),
        *draw(st.lists(valid_integer, min_size=13, max_size=13)),
        *draw(st.lists(category_field, min_size=26, max_size=26)),
    ]
    defect = draw(st.sampled_from(["none", "none", "integer", "label", "count", "nul"]))
    if defect == "nul":
        field = draw(st.integers(0, 39))
        at = draw(st.integers(0, len(fields[field])))
        fields[field] = fields[field][:at] + "\x00" + fields[field][at:]
    elif defect == "integer":
        fields[draw(st.integers(1, 13))] = draw(junk_integer)
    elif defect == "label":
        fields[0] = draw(st.sampled_from(["", "2", "x", "00", "1 ", "-1", "1.0"]))
    elif defect == "count":
        extra = draw(st.lists(field_text, min_size=1, max_size=3))
        fields = draw(st.sampled_from([fields[: len(extra) * 13], fields + extra]))
    return fields


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # file rewritten
)
@given(st.lists(criteo_line(), min_size=1, max_size=12), st.integers(1, 5))
def test_reader_agrees_with_the_reference_on_random_lines(tmp_path, lines, batch):
    path = write_lines(tmp_path / "random.txt", lines)
    want = [r for r in map(reference, lines) if r is not None]
    reader = data.CriteoReader(path, batch_size=batch, max_warnings_per_file=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.MalformedLineWarning)
        warnings.simplefilter("ignore", data.UnusualValueWarning)
        got = as_rows(list(reader))
    assert got == want
    blank = sum(fields == [""] for fields in lines)
    assert reader.malformed == len(lines) - len(want) - blank
    not_hex = [
        any(re.fullmatch(r"[0-9a-fA-F]*", value) is None for value in row[3])
        for row in want
    ]
    assert reader.unusual == sum(not_hex)


# Laziness


def first_batch_peak_memory(path) -> int:
    """The peak of traced memory while reading the first batch of 100."""
    reader = data.CriteoReader(path, batch_size=100)
    tracemalloc.start()
    batch = next(iter(reader))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert batch.size == 100 and reader.examples == 100 and reader.malformed == 0
    return peak


def test_reading_the_first_batch_reads_neither_the_end_nor_the_whole(tmp_path):
    meta = synthetic.generate(tmp_path, num_train=10_000, num_test=1, seed=1)
    small, large = tmp_path / "train.txt", tmp_path / "large.txt"
    large.write_bytes(small.read_bytes() * 8)
    for path in (small, large):
        with open(path, "a") as out:
            out.write("malformed last line\n")  # reading it would warn: an error here
    small_peak, large_peak = map(first_batch_peak_memory, (small, large))
    assert meta["train"]["examples"] == 10_000
    assert large.stat().st_size > 19_000_000
    assert large_peak < 1.2 * small_peak and large_peak < 20_000_000


def test_limit_reads_no_line_past_the_last_example_it_needs(tmp_path):
    lines = [good_line(value=str(i)) for i in range(5)] + [good_line(value="x")]
    path = write_lines(tmp_path / "tail.txt", lines)
    reader = data.CriteoReader(path, batch_size=2, limit=5)  # the bad line: unread
    assert [b.dense[:, 0].tolist() for b in reader] == [[0, 1], [2, 3], [4]]


def test_log_transform():
    got = data.log_transform(np.array([[-2.0, 0.0, 1.0, 99.0]], np.float32))
    np.testing.assert_allclose(got, [[0.0, 0.0, np.log(2.0), np.log(100.0)]], rtol=1e-6)
    assert got.dtype == np.float32


# The generator


def test_same_seed_same_files_other_seed_other_files(generated, tmp_path):
    files, meta = generated
    sizes = {"num_train": NUM_EXAMPLES, "num_test": NUM_TEST}
    again = synthetic.generate(tmp_path / "a", seed=SEED, **sizes)
    assert again == meta
    other = data.DatasetFiles(tmp_path / "a")
    for split in synthetic.SPLITS:
        path = getattr(files, split)
        assert getattr(other, split).read_bytes() == path.read_bytes()
        for got, want in zip(
            other.ground_truth(split), files.ground_truth(split), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    synthetic.generate(tmp_path / "b", seed=SEED + 1, **sizes)
    assert (tmp_path / "b" / "train.txt").read_bytes() != files.train.read_bytes()


def test_ids_are_eight_hex_digits_with_skewed_counts(generated):
    files, _ = generated
    batch = next(iter(data.CriteoReader(files.train, batch_size=NUM_EXAMPLES)))
    ids = batch.categorical["C3"][:, 0]
    present = ids[ids != ""]
    assert all(re.fullmatch("[0-9a-f]{8}", v) for v in present)
    _, counts = np.unique(present, return_counts=True)
    assert counts.max() > 50 and (counts == 1).sum() > 500  # a head and a long tail
    assert np.unique(batch.categorical["C9"]).size <= 3


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_stored_bayes_scores_are_those_of_the_true_probabilities(generated, split):
    files, meta = generated
    labels = read_labels(getattr(files, split))
    truth = files.ground_truth(split)
    late = truth.late_ids > 0
    summary = meta[split]
    assert summary["examples"] == labels.size == truth.probabilities.size
    assert summary["ctr"] == pytest.approx(labels.mean(), abs=1e-12)
    assert summary["bayes_auc"] == pytest.approx(
        metrics.auc(labels, truth.probabilities), abs=1e-12
    )
    assert summary["bayes_log_loss"] == pytest.approx(
        metrics.log_loss(labels, truth.probabilities)
    )
    assert summary["bayes_auc_late_ids"] == pytest.approx(
        metrics.auc(labels[late], truth.probabilities[late]), abs=1e-12
    )
    assert summary["examples_with_late_ids"] == late.sum()
    assert 0.7 < summary["bayes_auc"] < 0.85 and 0.18 < summary["ctr"] < 0.32
    assert json.loads(files.meta.read_text()) == meta


def test_late_ids_never_appear_before_the_start_and_do_after(tmp_path):
    files = data.DatasetFiles(tmp_path)
    meta = data.generate(
        tmp_path, num_train=3_000, num_test=1_000, seed=SEED, spec=SMALL_SPEC
    )
    start = meta["late_start_index"]
    assert start == 2_000
    batches = [
        next(iter(data.CriteoReader(p, batch_size=4_000)))
        for p in (files.train, files.test)
    ]
    counted = np.zeros(4_000, np.int64)
    for column in data.CATEGORICAL_COLUMNS:
        late = data.late_id_values(column, seed=SEED, spec=SMALL_SPEC)
        values = np.concatenate([b.categorical[column][:, 0] for b in batches])
        is_late = np.isin(values, late)
        counted += is_late
        if SMALL_SPEC.vocabulary_sizes[data.CATEGORICAL_COLUMNS.index(column)] < 1_000:
            assert late.size == 0
        else:
            assert 0.15 < late.size / 20_000 < 0.25
            assert not is_late[:start].any() and is_late[start:].any()
    truths = [files.ground_truth(split).late_ids for split in synthetic.SPLITS]
    np.testing.assert_array_equal(np.concatenate(truths), counted)
    assert meta["test"]["examples_with_late_ids"] == int((counted[3_000:] > 0).sum())


def test_ids_of_a_popularity_class_share_an_effect():
    spec = data.SyntheticSpec(id_effect_scale=0.0)
    ranks = np.arange(1, 2**12)
    effects = _click_model.id_effects(spec, SEED, 2, ranks)
    classes = np.floor(np.log2(ranks)).astype(int)
    for c in range(12):
        assert np.ptp(effects[classes == c]) == 0.0
    assert np.unique(effects).size == 12
    own = _click_model.id_effects(
        data.SyntheticSpec(shared_effect_scale=0.0), SEED, 2, ranks
    )
    assert 0.2 < own.std() < 0.3  # id_effect_scale's default, 0.25


def test_late_id_values_rejects_an_unknown_column():
    with pytest.raises(ValueError, match="'I1' is not one of C1..C26"):
        data.late_id_values("I1")


def test_ground_truth_rejects_an_unknown_split(generated):
    files, _ = generated
    with pytest.raises(ValueError, match="split 'valid' is not one of"):
        files.ground_truth("valid")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"vocabulary_sizes": (10,) * 25}, "vocabulary_sizes has 25 values"),
        ({"late_fraction": 0.9}, "late_fraction: 0.9 is out of range"),
        ({"dense_missing_rates": (1.5,) * 13}, "dense_missing_rates: 1.5"),
    ],
    ids=["short_vocabularies", "late_fraction", "missing_rate"],
)
def test_spec_rejects_bad_fields_by_name(fields, match):
    with pytest.raises(ValueError, match=f"SyntheticSpec.{match}"):
        data.SyntheticSpec(**fields)


def test_spec_round_trips_through_the_metadata(generated):
    _, meta = generated
    assert data.SyntheticSpec(**meta["spec"]) == data.SyntheticSpec()


def test_ensure_dataset_generates_once_then_reuses_or_regenerates(tmp_path):
    sizes = {"num_train": 500, "num_test": 100, "seed": 3}
    files = data.ensure_dataset(tmp_path, **sizes)
    assert files.metadata()["num_train"] == 500
    written = files.train.stat().st_mtime_ns
    assert data.ensure_dataset(tmp_path, **sizes) == files
    assert files.train.stat().st_mtime_ns == written  # reused
    data.ensure_dataset(tmp_path, **{**sizes, "num_test": 200})
    assert files.metadata()["num_test"] == 200  # other parameters: again
    files.test.write_bytes(files.test.read_bytes()[:1000])  # cut short
    data.ensure_dataset(tmp_path, **{**sizes, "num_test": 200})
    assert sum(b.size for b in data.CriteoReader(files.test, batch_size=512)) == 200


def test_default_directory_is_the_environment_variable_or_the_cache(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ADAPTIVE_JAX_DATA", str(tmp_path / "here"))
    assert data.default_directory() == tmp_path / "here"
    files = data.ensure_dataset(num_train=200, num_test=50)
    assert files.directory == tmp_path / "here" and files.metadata()["seed"] == 0
    monkeypatch.delenv("ADAPTIVE_JAX_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_directory() == tmp_path / "cache" / "adaptive_jax" / "synthetic"


def test_default_sizes_are_those_the_demo_expects():
    assert (synthetic.DEFAULT_TRAIN, synthetic.DEFAULT_TEST) == (200_000, 50_000)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_train": 0}, "num_train=0"),
        ({"num_test": 0}, "num_test=0"),
        ({"seed": -1}, "seed=-1"),
    ],
    ids=["no_train", "no_test", "negative_seed"],
)
def test_generate_rejects_bad_options(tmp_path, options, match):
    with pytest.raises(ValueError, match=f"generate: {match}"):
        data.generate(tmp_path, **options)


@pytest.mark.parametrize("seed", [1, 2], ids=["seed1", "seed2"])
def test_every_seed_draws_the_specs_click_rate(tmp_path, seed):
    # At a fixed constant these seeds click at 12% and 6%; solved, at the rate.
    spec = dataclasses.replace(SMALL_SPEC, click_rate=0.3)
    meta = synthetic.generate(
        tmp_path, num_train=10_000, num_test=10_000, seed=seed, spec=spec
    )
    mean = (meta["train"]["mean_probability"] + meta["test"]["mean_probability"]) / 2
    assert mean == pytest.approx(0.3, abs=0.01)


def test_without_a_click_rate_the_constant_is_the_specs_bias(tmp_path):
    spec = dataclasses.replace(SMALL_SPEC, click_rate=None, bias=-1.25)
    meta = synthetic.generate(tmp_path, num_train=100, num_test=10, spec=spec)
    assert meta["bias"] == -1.25


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"zipf_exponent": (1.1,) * 25}, "has 25 values", id="exponents"),
        pytest.param({"zipf_exponent": 0.0}, "zipf_exponent", id="exponent_zero"),
        pytest.param({"click_rate": 1.0}, "click_rate", id="click_rate_one"),
    ],
)
def test_bad_spec_values_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL_SPEC, **changes)
