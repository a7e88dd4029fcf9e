"""The CTR example end to end on a tiny generated data set, and its bad inputs."""

import json
import pathlib

import numpy as np
import pytest

from adaptive_jax import data
from adaptive_jax.examples import ctr
from adaptive_jax.examples.ctr import train as ctr_train
from adaptive_jax.examples.ctr import variants

NUM_TRAIN, NUM_TEST = 3_000, 1_000
# No extra sweep; every bucket kept, unchosen (the choice: test_ctr_choice.py).
FAST = ["--batch-size", "256", "--no-progress", "--sweep", "--rare-zero"]
SMALL_TABLES = ["--hash-bucket-size", "8192", "--adaptive-hash-bucket-size", "1024"]
CATEGORIES = data.CATEGORICAL_COLUMNS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> data.DatasetFiles:
    directory = tmp_path_factory.mktemp("ctr_data")
    return data.ensure_dataset(directory, num_train=NUM_TRAIN, num_test=NUM_TEST)


def _outputs(tmp_path: pathlib.Path) -> list[str]:
    return ["--output-dir", str(tmp_path), "--json", str(tmp_path / "out.json")]


def _run(dataset, tmp_path, variant_names) -> dict:
    status = ctr.main(
        ["--data-dir", str(dataset.directory), "--num-train", str(NUM_TRAIN),
         "--num-test", str(NUM_TEST), "--variants", *variant_names, *FAST,
         *SMALL_TABLES, *_outputs(tmp_path)]
    )  # fmt: skip
    assert status == 0
    return json.loads((tmp_path / "out.json").read_text())


def _check_sane(result: dict, variant_names: list[str]) -> dict[str, dict]:
    by_variant = {r["variant"]: r for r in result["variants"]}
    assert sorted(by_variant) == sorted(variant_names)
    for r in by_variant.values():
        assert 0.5 < r["auc"] < 1.0, r
        assert 0.0 < r["log_loss"] < 1.0, r
        assert 0.0 < r["auc_late_ids"] < 1.0, r
        assert list(r["auc_by_late_ids"]) == ["0", "1", "2", "3+"], r
        assert 0 < r["export_bytes"] < r["param_bytes"]
        assert r["examples_per_s"] > 0
        assert r["test_examples"] == NUM_TEST
        assert r["train_examples"] == NUM_TRAIN  # the short last batch too
    return by_variant


def test_adaptive_end_to_end(dataset, tmp_path, capsys):
    # (The static variant runs end to end in the malformed-lines test; all four
    # together, in the slow test below.)
    # Act
    result = _run(dataset, tmp_path, ["adaptive"])

    # Assert
    printed = capsys.readouterr().out
    assert "| adaptive |" in printed and "examples/s" in printed
    by_variant = _check_sane(result, ["adaptive"])
    assert by_variant["adaptive"]["promotions"] > 0
    png = (tmp_path / "ctr.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 1_000_000


@pytest.mark.slow
def test_four_variants_end_to_end(dataset, tmp_path):
    # Act
    result = _run(dataset, tmp_path, list(variants.VARIANTS))

    # Assert
    by_variant = _check_sane(result, list(variants.VARIANTS))
    assert by_variant["dynamic"]["overflows"] == 0  # a row for every id
    distinct = sum(result["data"]["distinct_ids"].values())
    assert by_variant["dynamic"]["live_rows"] == distinct
    smaller = by_variant["adaptive"]["export_bytes"]
    assert smaller < by_variant["dynamic"]["export_bytes"]
    assert [r["variant"] for r in result["sweep"]] == ["static"]
    assert (tmp_path / "ctr.png").read_bytes().startswith(b"\x89PNG")


def test_a_budget_sizes_the_variant_and_the_trained_state_fits_it(
    dataset, tmp_path, capsys
):
    # Arrange: about a quarter of a row per distinct id (16,464 ids, ~135 B a row).
    budget = 600_000

    # Act
    status = ctr.main(
        ["--data-dir", str(dataset.directory), "--num-train", str(NUM_TRAIN),
         "--num-test", str(NUM_TEST), "--variants", "adaptive", "--budget",
         str(budget), "--no-plot", *FAST, *_outputs(tmp_path)]
    )  # fmt: skip

    # Assert: the trained state holds the sized arrays, within the budget.
    assert status == 0
    (result,) = json.loads((tmp_path / "out.json").read_text())["variants"]
    sizing = result["sizing"]
    assert result["param_bytes"] == sizing["training_bytes"] <= budget
    assert result["export_bytes"] <= sizing["export_bytes_bound"]
    assert result["settings"]["filter_freq"] == sizing["filter_freq"] >= 3
    assert result["promotions"] > 0
    printed = capsys.readouterr().out
    assert f"for a training budget of {budget:,} bytes" in printed
    per_id = ctr.variants.per_id_bytes(
        ctr.scan.scan(data.CriteoReader([dataset.train], batch_size=1024)),
        variants.Settings(),
    )
    assert f"takes {per_id:,} bytes of training: the budget is" in printed
    assert budget < per_id  # a real constraint: the rows do not fit every id
    assert f"filter_freq {sizing['filter_freq']}:" in printed
    assert all(f"  {key}: " in printed for key in CATEGORIES)  # a reason each


def test_pressure_eviction_makes_room_in_a_dynamic_table_a_budget_limits(
    dataset, tmp_path
):
    # Arrange: rows for about a tenth of the ids; 12 steps, evicting at step 10.
    budget = 400_000

    # Act
    status = ctr.main(
        ["--data-dir", str(dataset.directory), "--num-train", str(NUM_TRAIN),
         "--num-test", str(NUM_TEST), "--variants", "dynamic", "--budget",
         str(budget), "--pressure-evict", "--no-plot", *FAST, *_outputs(tmp_path)]
    )  # fmt: skip

    # Assert: the table filled up, rows went, and it fits the budget still.
    assert status == 0
    (result,) = json.loads((tmp_path / "out.json").read_text())["variants"]
    assert result["settings"]["pressure_evict"] is True
    assert result["overflows"] > 0  # the capacity is a real constraint
    assert result["evictions"] > 0
    assert result["param_bytes"] == result["sizing"]["training_bytes"] <= budget


def test_a_budget_below_the_least_state_says_how_much_is_needed(
    dataset, tmp_path, capsys
):
    status = ctr.main(
        ["--data-dir", str(dataset.directory), "--num-train", str(NUM_TRAIN),
         "--num-test", str(NUM_TEST), "--variants", "filtered", "--budget", "1000",
         *FAST, *_outputs(tmp_path)]
    )  # fmt: skip

    assert status == 2
    error = capsys.readouterr().err
    assert "budget['training'] = 1,000 bytes is below the least" in error
    assert "give at least" in error
    assert not (tmp_path / "out.json").exists()


def _criteo_lines(count: int, *, seed: int = 0, start: int = 0) -> list[str]:
    """Distinct Criteo lines: 26 hex ids from small vocabularies, 13 counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + count):
        ids = [f"{rng.integers(0, 50):08x}" for _ in CATEGORIES]
        counts = [str(rng.integers(0, 9)) for _ in data.INTEGER_COLUMNS]
        counts[0] = str(i)  # every line its own
        rows.append("\t".join([str(i % 2), *counts, *ids]))
    return rows


def _write(path: pathlib.Path, rows: list[str]) -> pathlib.Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def _main_on(tmp_path, train_rows, test_rows, *extra) -> int:
    train = _write(tmp_path / "train.txt", train_rows)
    test = _write(tmp_path / "test.txt", test_rows)
    return ctr.main(
        ["--train", str(train), "--test", str(test), "--variants", "static",
         "--batch-size", "64", "--no-progress", "--sweep", "--no-plot", *extra,
         *_outputs(tmp_path)]
    )  # fmt: skip


def test_malformed_lines_are_skipped_with_a_warning(tmp_path, capsys):
    # Arrange
    train = _criteo_lines(300)
    train[5] = "1\tnot enough fields"

    # Act
    with pytest.warns(data.MalformedLineWarning, match="train.txt:6: skipped"):
        status = _main_on(tmp_path, train, _criteo_lines(100, start=300))

    # Assert
    assert status == 0
    result = json.loads((tmp_path / "out.json").read_text())
    (static,) = result["variants"]
    assert result["data"]["train_examples"] == 299  # every good line
    assert static["train_examples"] == 299  # trained, the short batch padded
    assert "train.txt: 1 malformed lines skipped" in capsys.readouterr().err
    assert not (tmp_path / "ctr.png").exists()


def _line(i: int, ids: list[str], label: int = 0) -> str:
    counts = [str(i)] + ["1"] * 12  # I1 makes each line its own
    return "\t".join([str(label), *counts, *ids])


def test_late_ids_are_those_first_seen_late_or_never(tmp_path):
    # Arrange: every id of value 0..4 is seen in the first 5 lines; one id
    # first at line 150 of 200 (late at --late-start 0.5); one never.
    train = [_line(i, [f"{i % 5:08x}"] * 26, i % 2) for i in range(200)]
    train[150] = _line(150, ["0000abcd"] + ["00000000"] * 25)
    late = ["0000abcd"] + ["00000001"] * 25
    never = ["00000001"] * 25 + ["feedf00d"]
    test = [
        _line(0, late),
        _line(1, ["00000002"] * 26),
        _line(2, never),
        _line(3, ["0000abcd"] + ["00000001"] * 24 + ["feedf00d"]),
    ]
    args = ctr.cli.parser().parse_args(
        ["--train", str(_write(tmp_path / "train.txt", train)), "--test",
         str(_write(tmp_path / "test.txt", test)), "--late-start", "0.5"]
    )  # fmt: skip

    # Act
    found = ctr.run.survey(ctr.run.dataset(args), args)

    # Assert
    assert found.late.tolist() == [1, 0, 1, 2]
    assert (
        found.train.first_seen["C1"][
            np.searchsorted(found.train.values["C1"], "0000abcd")
        ]
        == 150
    )


def test_repeated_and_leaked_examples_are_counted_and_warned(tmp_path, capsys):
    # Arrange
    train = _criteo_lines(200)
    train += train[:30]  # 30 repeats
    test = _criteo_lines(40, start=500) + train[:10]  # 10 leaked

    # Act
    status = _main_on(tmp_path, train, test)

    # Assert
    assert status == 0
    err = capsys.readouterr().err
    assert "train.txt: 30 of 230 examples repeat an earlier one" in err
    assert "10 of 50 test examples also appear in the training split" in err
    problems = json.loads((tmp_path / "out.json").read_text())["data"]["problems"]
    assert len(problems) == 2


def test_columns_without_values_or_with_one_are_warned_and_sized(tmp_path, capsys):
    # Arrange: C3 never has a value, C4 always the same one; both still train.
    rows = [line.split("\t") for line in _criteo_lines(200)]
    for fields in rows:
        fields[14 + 2], fields[14 + 3] = "", "0000beef"
    train = ["\t".join(fields) for fields in rows]

    # Act
    status = _main_on(tmp_path, train, _criteo_lines(50, start=900),
                      "--variants", "adaptive", "static")  # fmt: skip

    # Assert
    assert status == 0
    err = capsys.readouterr().err
    assert "train.txt: column C3 has no value at all" in err
    assert "train.txt: column C4 has one value only ('0000beef')" in err
    result = json.loads((tmp_path / "out.json").read_text())
    assert {r["variant"] for r in result["variants"]} == {"adaptive", "static"}
    assert result["data"]["distinct_ids"]["C3"] == 0


def test_values_that_are_not_hexadecimal_are_kept_and_warned(tmp_path, capsys):
    # Arrange
    train = _criteo_lines(100)
    fields = train[7].split("\t")
    fields[14 + 4] = "user:42"  # C5
    train[7] = "\t".join(fields)

    # Act
    with pytest.warns(data.UnusualValueWarning, match=r"train.txt:8: C5 'user:42'"):
        status = _main_on(tmp_path, train, _criteo_lines(30, start=900))

    # Assert
    assert status == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["data"]["train_examples"] == 100  # kept
    assert "1 kept with values that are not hexadecimal" in capsys.readouterr().err


def test_the_chosen_sizes_are_printed_and_help_defines_every_column(capsys):
    # Act
    with pytest.raises(SystemExit):
        ctr.main(["--help"])

    # Assert
    text = capsys.readouterr().out
    for column in ("AUC", "log loss", "AUC late ids", "param MB", "export MB",
                   "examples/s"):  # fmt: skip
        assert f"\n  {column}  " in text
    assert "synthetic data (ignored with --train/--test)" in text
    assert "(default: ctr_out)" in text


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        pytest.param(["nowhere.txt"], "no such Criteo file or directory", id="missing"),
        pytest.param([], "no data files in this directory", id="empty_dir"),
    ],
)
def test_bad_paths_give_a_clear_error(tmp_path, capsys, paths, message):
    # Arrange
    empty = tmp_path / "empty"
    empty.mkdir()
    train = [str(tmp_path / p) for p in paths] or [str(empty)]

    # Act
    status = ctr.main(["--train", *train, "--test", *train, *_outputs(tmp_path)])

    # Assert
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_train_without_test_is_refused(tmp_path, capsys):
    status = ctr.main(["--train", str(tmp_path), *_outputs(tmp_path)])
    assert status == 2
    assert "give both --train and --test" in capsys.readouterr().err


def _pairwise_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (
        pos[:, None] == neg[None, :]
    ).sum()
    return wins / (pos.size * neg.size)


def test_the_cold_start_curve_bins_examples_by_their_late_ids():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).astype(np.float32)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 400), 0.01, 0.99)
    late = rng.integers(0, 6, 400).astype(np.uint8)
    late[late == 2] = 1  # no example with exactly 2: one class missing -> None

    result = ctr_train.scores(labels, scores, late)

    curve = result["auc_by_late_ids"]
    assert curve["0"] == pytest.approx(
        _pairwise_auc(labels[late == 0], scores[late == 0])
    )
    assert curve["1"] == pytest.approx(
        _pairwise_auc(labels[late == 1], scores[late == 1])
    )
    assert curve["2"] is None
    assert curve["3+"] == pytest.approx(
        _pairwise_auc(labels[late >= 3], scores[late >= 3])
    )
    assert result["auc_late_ids"] == pytest.approx(
        _pairwise_auc(labels[late > 0], scores[late > 0])
    )
