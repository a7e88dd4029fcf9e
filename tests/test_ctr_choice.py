"""The CTR example's fields without buckets (`Settings.rare_zero`) and their
choice on a validation split (`choice.choose`)."""

import dataclasses
import gzip
import json

import jax
import numpy as np
import pytest

from adaptive_jax import data, export, serving
from adaptive_jax import feature_column as fc
from adaptive_jax.examples import ctr
from adaptive_jax.examples.ctr import choice, cli, run, train, variants
from adaptive_jax.examples.ctr import model as model_lib

NUM_TRAIN, NUM_TEST, BATCH = 3_000, 1_000, 256


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """`(files, found, args)` of a tiny generated set."""
    directory = tmp_path_factory.mktemp("choice_data")
    generated = data.ensure_dataset(directory, num_train=NUM_TRAIN, num_test=NUM_TEST)
    args = cli.parser().parse_args(
        ["--train", str(generated.train), "--test", str(generated.test),
         "--batch-size", str(BATCH), "--no-progress"]
    )  # fmt: skip
    files = run.dataset(args)
    return files, run.survey(files, args), args


def _members(column) -> dict[str, object]:
    return {m.key: m for m in column.categorical_column.members}


def test_rare_zero_fields_are_filtered_members_with_the_adaptive_rows(survey):
    _, found, _ = survey
    plain = variants.columns("adaptive", found.train, variants.Settings())
    split = variants.columns(
        "adaptive", found.train, variants.Settings(rare_zero=("C1", "C5"))
    )

    assert [c.categorical_column.key for c in split] == [
        variants.FIELDS_KEY,
        variants.RARE_ZERO_KEY,
    ]
    with_buckets, without = (_members(c) for c in split)
    assert sorted(without) == ["C1", "C5"]
    assert len(with_buckets) == len(data.CATEGORICAL_COLUMNS) - 2
    assert split[1].categorical_column.adaptive is False
    assert all(m.hash_bucket_size is None for m in without.values())
    # One bucket per field with buckets, as the plain variant has.
    assert sum(m.hash_bucket_size for m in with_buckets.values()) == 24
    # The same rows as the plain adaptive variant (a stacked column holds the
    # sum of its members' capacities).
    capacity = [c.categorical_column.ev_option.capacity for c in (*plain, *split)]
    assert capacity[0] == capacity[1] + capacity[2]
    assert capacity[2] > 0


def test_every_field_without_buckets_is_the_filtered_variant(survey):
    _, found, _ = survey
    every = tuple(data.CATEGORICAL_COLUMNS)
    got = variants.columns("adaptive", found.train, variants.Settings(rare_zero=every))
    want = variants.columns("filtered", found.train, variants.Settings())
    assert [c.categorical_column for c in got] == [c.categorical_column for c in want]
    assert [c.dimension for c in got] == [c.dimension for c in want]


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"rare_zero": ("C99",)}, "rare_zero must name distinct fields"),
        ({"rare_zero": ("C1", "C1")}, "rare_zero must name distinct fields"),
        ({"rare_zero": ("C1",), "budget": 10**6}, "rare_zero and Settings.budget"),
    ],
)
def test_bad_rare_zero_is_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        variants.Settings(**changes)


def test_without_bucket_zeroes_that_fields_segment_only(survey):
    _, found, _ = survey
    columns = variants.columns(
        "adaptive", found.train, variants.Settings(adaptive_hash_bucket_size=260)
    )
    tables = fc.init_state(columns, train.optimizers(0.01).tables, jax.random.key(0))
    name = columns[0].name
    before = np.asarray(tables[name].static.values)
    members = columns[0].categorical_column.members
    sizes = [m.hash_bucket_size for m in members]
    at = 1 + int(np.argmax(sizes[1:]))  # the largest segment after the first
    start = sum(sizes[:at])  # segments follow each other in field order

    after = choice.without_bucket(tables, columns[0], members[at].key)

    want = before.copy()
    want[start : start + sizes[at]] = 0.0
    assert start > 0 and sizes[at] > 1 and np.abs(before[start:]).sum() > 0
    np.testing.assert_array_equal(np.asarray(after[name].static.values), want)


def test_a_rare_zero_field_serves_an_unseen_id_0_and_a_bucket_field_its_bucket(
    survey,
):
    files, found, args = survey
    settings = variants.Settings(rare_zero=("C1",))
    columns = variants.columns("adaptive", found.train, settings)
    model = model_lib.DeepFM(settings.dimension)
    optimizers = train.optimizers(settings.learning_rate)
    state = train.init(columns, model, optimizers, jax.random.key(0), BATCH)
    step = train.make_step(columns, model, optimizers, settings.evict_every)
    state, _ = train.train(
        state,
        step,
        run.reader(files.train, args, test=False),
        columns,
        batch_size=BATCH,
        progress=False,
    )
    built = serving.build(export.export(state.tables, columns))
    unseen = {k: np.array(["fedcba98"]) for k in data.CATEGORICAL_COLUMNS}
    embeddings = np.asarray(serving.lookup(built, unseen)).reshape(
        -1, settings.dimension
    )

    # The first column's 25 fields, then C1's (the second column).
    bucket_of_c2, c1 = embeddings[0], embeddings[-1]
    np.testing.assert_array_equal(c1, np.zeros(settings.dimension))
    assert np.abs(bucket_of_c2).sum() > 0


@pytest.mark.slow  # three trainings and 27 scorings: 15-30 s
def test_the_choice_is_the_candidate_of_the_best_validation_auc(survey):
    files, found, args = survey
    settings = dataclasses.replace(variants.Settings(), learning_rate=0.01)

    chosen = choice.choose(settings, found, files, args)

    best = max(chosen.candidates.values(), key=lambda c: c[1])
    assert chosen.rare_zero == best[0]
    assert chosen.candidates["buckets"][0] == ()
    assert chosen.candidates["none"][0] == tuple(data.CATEGORICAL_COLUMNS)
    assert set(chosen.gains) == {k for k, n in found.train.distinct.items() if n}
    gainers = tuple(k for k, g in chosen.gains.items() if g > 0)
    if 0 < len(gainers) < len(chosen.gains):
        assert chosen.candidates["gainers"][0] == gainers
    else:
        assert "gainers" not in chosen.candidates


def test_held_out_is_the_last_15_percent_of_the_lines_in_order(tmp_path):
    lines = [f"{i}\t{i % 2}\n".encode() for i in range(41)]
    first = tmp_path / "a.txt"
    first.write_bytes(b"".join(lines[:17]))
    second = tmp_path / "b.txt.gz"
    second.write_bytes(gzip.compress(b"".join(lines[17:])))

    fit, valid = choice.held_out([first, second], tmp_path / "split")

    cut = round(41 * 0.85)  # 35
    assert fit.read_bytes() == b"".join(lines[:cut])
    assert valid.read_bytes() == b"".join(lines[cut:])


@pytest.mark.parametrize(
    "options, message",
    [
        (["--rare-zero", "auto", "C1"], "give 'auto' alone"),
        (["--rare-zero", "auto", "--budget", "100000"], "--budget cannot be"),
        (["--rare-zero", "C0"], "rare_zero must name distinct fields"),
        (["--rare-zero", "C1", "--variants", "static"], "adaptive variant only"),
        (["--rare-zero", "auto", "--variants", "filtered"], "adaptive variant only"),
    ],
)
def test_bad_rare_zero_options_are_refused_before_any_work(
    options, message, tmp_path, capsys
):
    status = ctr.main(["--data-dir", str(tmp_path / "never"), *options])

    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before the data is made


def options(*argv: str):
    return cli.parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "argv, chooses, rare_zero",
    [
        ([], True, ()),  # the default, with the adaptive variant
        (["--rare-zero", "auto"], True, ()),
        (["--rare-zero"], False, ()),  # every bucket kept, unchosen
        (["--rare-zero", "C1", "C5"], False, ("C1", "C5")),
        (["--budget", "100000"], False, ()),  # a budget sizes every bucket
        (["--variants", "static", "filtered"], False, ()),  # nothing to choose
    ],
    ids=["default", "auto", "keep", "named", "budget", "no_adaptive"],
)
def test_the_fields_are_chosen_by_default_unless_named_kept_or_budgeted(
    argv, chooses, rare_zero
):
    args = options(*argv)
    assert cli.chooses_rare_zero(args) is chooses
    assert cli.settings_of(args).rare_zero == rare_zero


def test_the_adaptive_variant_is_trained_with_the_fields_chosen_by_default(
    tmp_path, capsys
):  # four trainings and 27 scorings: 20-40 s
    status = ctr.main(
        ["--data-dir", str(tmp_path / "data"), "--num-train", "3000",
         "--num-test", "1000", "--variants", "adaptive",
         "--batch-size", "256", "--no-progress", "--no-plot",
         "--output-dir", str(tmp_path)]
    )  # fmt: skip

    assert status == 0
    result = json.loads((tmp_path / "ctr.json").read_text())
    chosen = result["rare_zero_choice"]
    best = max(chosen["candidates"].values(), key=lambda c: c[1])
    assert chosen["rare_zero"] == best[0]
    assert result["variants"][0]["settings"]["rare_zero"] == best[0]
    assert "chosen on the training split's last 15%" in capsys.readouterr().out


def test_a_validation_split_of_one_class_keeps_every_bucket_and_says_why(
    tmp_path, capsys
):
    # Arrange: the last 15% of the training lines are all non-clicks.
    rng = np.random.default_rng(0)

    def line(i: int, label: int) -> str:
        ids = [f"{rng.integers(0, 20):08x}" for _ in data.CATEGORICAL_COLUMNS]
        counts = [str(i)] + ["1"] * (len(data.INTEGER_COLUMNS) - 1)
        return "\t".join([str(label), *counts, *ids])

    train = [line(i, i % 2 if i < 170 else 0) for i in range(200)]
    test = [line(i, i % 2) for i in range(200, 260)]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")

    # Act
    status = ctr.main(
        ["--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt"),
         "--variants", "adaptive", "--batch-size", "64", "--no-progress",
         "--sweep", "--no-plot", "--output-dir", str(tmp_path)]
    )  # fmt: skip

    # Assert
    assert status == 0
    assert (
        "keep their buckets, unchosen: the training split's last 15% does not hold both"
        in capsys.readouterr().out
    )
    result = json.loads((tmp_path / "ctr.json").read_text())
    assert result["rare_zero_choice"]["candidates"] == {}
    assert result["variants"][0]["settings"]["rare_zero"] == []
