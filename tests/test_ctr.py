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
FAST = ["--batch-size", "256", "--no-progress", "--sweep"]  # no extra sweep
SMALL_TABLES = ["--hash-bucket-size", "8192", "--adaptive-hash-bucket-size", "1024"]


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


def _write_criteo(path: pathlib.Path, lines: int, *, bad_line: int | None = None):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(lines):
        ids = [f"{rng.integers(0, 50):08x}" for _ in data.CATEGORICAL_COLUMNS]
        counts = [str(rng.integers(0, 9)) for _ in data.INTEGER_COLUMNS]
        rows.append("\t".join([str(i % 2), *counts, *ids]))
    if bad_line is not None:
        rows[bad_line] = "1\tnot enough fields"
    path.write_text("\n".join(rows) + "\n")


def test_malformed_lines_are_skipped_with_a_warning(tmp_path, capsys):
    # Arrange
    _write_criteo(tmp_path / "train.txt", 300, bad_line=5)
    _write_criteo(tmp_path / "test.txt", 100)

    # Act
    with pytest.warns(data.MalformedLineWarning, match="train.txt:6: skipped"):
        status = ctr.main(
            ["--train", str(tmp_path / "train.txt"), "--test",
             str(tmp_path / "test.txt"), "--variants", "static", "--batch-size",
             "64", "--no-progress", "--sweep", "--no-plot", *_outputs(tmp_path)]
        )  # fmt: skip

    # Assert
    assert status == 0
    result = json.loads((tmp_path / "out.json").read_text())
    (static,) = result["variants"]
    assert result["data"]["train_examples"] == 256  # 299 good lines, whole batches
    assert static["auc_late_ids"] is None  # no ground truth for a user's files
    assert static["auc_by_late_ids"] is None
    assert not (tmp_path / "ctr.png").exists()


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


def test_stack_prefixes_each_column():
    ids = {k: np.array([["7"], [""]]) for k in data.CATEGORICAL_COLUMNS}
    stacked = variants.stack(ids)
    assert stacked.shape == (2 * 26, 1)
    assert stacked[25, 0] == "C26:7" and set(stacked[26:, 0]) == {""}


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
