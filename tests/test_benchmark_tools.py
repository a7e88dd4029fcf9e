"""The claim's tools: the real slice's converter, the calibration's fit, and
the benchmark's frontier and targets."""

import gzip
import hashlib
import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

from adaptive_jax import metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module(relative: str):
    spec = importlib.util.spec_from_file_location(
        relative.replace("/", "_"), ROOT / relative
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


criteo_slice = _module("benchmarks/data/criteo_slice.py")
calibrate = _module("benchmarks/data/calibrate.py")
frappe = _module("benchmarks/data/frappe.py")
bookcrossing = _module("benchmarks/data/bookcrossing.py")
lastfm = _module("benchmarks/data/lastfm.py")
amazon_magazine = _module("benchmarks/data/amazon_magazine.py")
talkingdata = _module("benchmarks/data/talkingdata.py")
_sources = criteo_slice._sources
ctr_bench = _module("benchmarks/ctr_bench.py")

HEADER = [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


def _csv(path: pathlib.Path, rows: list[list[str]], with_id: bool) -> pathlib.Path:
    names = (["Id", "Label"] if with_id else ["label"]) + HEADER
    path.write_text("\n".join(",".join(r) for r in [names, *rows]) + "\n")
    return path


def _fields(seed: int) -> list[str]:
    ints = [f"{seed}.0", ""] + [str(seed + i) for i in range(11)]
    return ints + [f"{seed:08x}"] * 25 + [""]


def test_the_slice_is_placed_by_id_normalised_and_split_by_time(tmp_path):
    # Arrange: a head file (rows at Ids 10,000,000 + i) and a Kaggle CSV that
    # repeats one head row and adds rows before and after the test cut.
    head = _csv(tmp_path / "head.csv", [["1", *_fields(s)] for s in range(3)], False)
    kaggle = _csv(
        tmp_path / "kaggle.csv",
        [
            ["49800001", "0", *_fields(7)],
            ["10000001", "1", *_fields(1)],  # = head row 1
            ["20000000", "0", *_fields(5)],
        ],
        True,
    )
    out = tmp_path / "slice"

    # Act
    criteo_slice.main(
        ["--head", str(head), "--kaggle-csv", str(kaggle), "--out", str(out),
         "--no-check"]
    )  # fmt: skip

    # Assert
    train = gzip.decompress((out / "train.txt.gz").read_bytes()).decode()
    test = gzip.decompress((out / "test.txt.gz").read_bytes()).decode()
    lines = train.splitlines()
    assert len(lines) == 4 and len(test.splitlines()) == 1
    assert [line.split("\t")[1] for line in lines] == ["0", "1", "2", "5"]  # by Id
    assert lines[0].split("\t")[:3] == ["1", "0", ""]  # "0.0" -> "0"
    assert len(lines[0].split("\t")) == 40
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train"]["examples"] == 4 and manifest["test"]["positives"] == 0


def test_the_slice_refuses_two_different_rows_of_one_id(tmp_path):
    head = _csv(tmp_path / "head.csv", [["1", *_fields(0)]], False)
    kaggle = _csv(tmp_path / "k.csv", [["10000000", "0", *_fields(0)]], True)
    with pytest.raises(ValueError, match="Id 10000000 differs"):
        criteo_slice.collect(head, [kaggle])


def test_the_slice_refuses_sources_of_other_blob_ids(tmp_path):
    head = _csv(tmp_path / "head.csv", [["1", *_fields(0)]], False)
    with pytest.raises(SystemExit, match="is not one listed"):
        criteo_slice.main(["--head", str(head), "--kaggle-csv", str(head)])


def test_blob_id_is_gits(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert (
        criteo_slice._sources.blob_id(path)
        == "ce013625030ba8dba906f756967f9e9ca394464a"
    )


def test_frappe_lines_become_criteo_lines_field_by_field(tmp_path):
    # Arrange: two libFM lines (label, 10 one-hot features in field order).
    source = tmp_path / "frappe.libfm"
    source.write_text(
        "1 266:1 1244:1 5042:1 5049:1 5054:1 5055:1 5058:1 5062:1 5074:1 5149:1\n"
        "-1 138:1 1296:1 5041:1 5052:1 5053:1 5055:1 5058:1 5061:1 5085:1 5201:1\n"
    )

    # Act
    frappe.main(["--train", str(source), "--test", str(source), "--out",
                 str(tmp_path / "out"), "--no-check"])  # fmt: skip

    # Assert
    lines = gzip.decompress((tmp_path / "out" / "train.txt.gz").read_bytes())
    first, second = [line.split("\t") for line in lines.decode().splitlines()]
    assert len(first) == 40 and first[0] == "1" and second[0] == "0"
    assert first[1:14] == [""] * 13 and first[24:] == [""] * 16
    assert first[14:16] == ["0000010a", "000004dc"]  # user 266, item 1244
    assert second[23] == f"{5201:08x}"  # city, C10


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1 10:1", "label '0'"),
        ("1 1:1 2:1", "2 features, expected 10"),
        ("1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1 10:0.5", "one-hot"),
    ],
    ids=["label_zero", "too_few_fields", "not_one_hot"],
)
def test_frappe_refuses_lines_it_cannot_read(line, message):
    with pytest.raises(ValueError, match=message):
        frappe.convert_line(line, "f:1")


def _split_lines(out: pathlib.Path, split: str) -> list[list[str]]:
    text = gzip.decompress((out / f"{split}.txt.gz").read_bytes()).decode()
    return [line.split("\t") for line in text.splitlines()]


def test_first_seen_ids_number_values_in_order_of_first_appearance():
    assert _sources.first_seen_ids(["b", "a", "b", "c"]) == {
        "b": "00000000", "a": "00000001", "c": "00000002",
    }  # fmt: skip


def test_id_counts_count_rare_late_and_unseen_ids_per_field():
    # Arrange: C1 ids x (3 times: click, no, click) and y (once, no click) in
    # training; the test holds x, an unseen z, and an empty C1 with C2 unseen.
    line = _sources.criteo_line
    splits = {
        "train": [line(1, ["x", "p"]), line(0, ["x", "p"]), line(1, ["x", "p"]),
                  line(0, ["y", "p"])],
        "test": [line(1, ["x", "p"]), line(0, ["z", "p"]), line(0, ["", "q"])],
    }  # fmt: skip

    # Act
    counts = _sources.id_counts(splits, ("a", "b"))

    # Assert
    assert counts["a"] == {
        "train_ids": 2, "train_ids_seen_under_3": 0.5,
        "click_rate_first_2": round(1 / 3, 4), "click_rate_later": 1.0,
        "test_ids": 2, "test_examples_unseen": round(1 / 3, 4),
    }  # fmt: skip
    assert counts["b"]["test_examples_unseen"] == round(1 / 3, 4)
    assert counts["test_examples_any_unseen"] == round(2 / 3, 4)


def test_bookcrossing_shuffles_by_hash_and_tests_a_fifth(tmp_path):
    # Arrange: grouped by user, positives first, as the source is.
    rows = [(u, i, int(i < 10)) for u in range(20) for i in range(20)]
    source = tmp_path / "ratings_final.txt"
    source.write_text("".join(f"{u}\t{i}\t{y}\r\n" for u, i, y in rows))
    out = tmp_path / "out"

    # Act
    bookcrossing.main(["--ratings", str(source), "--out", str(out), "--no-check"])

    # Assert: each line once, in its split by the hash's formula, in hash order.
    def key(u: int, i: int) -> str:
        return hashlib.sha256(f"{u}\t{i}".encode()).hexdigest()

    got = {}
    for split in ("train", "test"):
        lines = _split_lines(out, split)
        assert all(len(f) == 40 and f[1:14] == [""] * 13 for f in lines)
        assert all(f[16:] == [""] * 24 for f in lines)
        pairs = [(int(f[14], 16), int(f[15], 16)) for f in lines]
        assert [key(*p) for p in pairs] == sorted(key(*p) for p in pairs)
        got[split] = {p: f[0] for p, f in zip(pairs, lines, strict=True)}
    expected_test = {(u, i) for u, i, _ in rows if int(key(u, i)[:8], 16) % 5 == 0}
    assert set(got["test"]) == expected_test
    assert set(got["train"]) == {(u, i) for u, i, _ in rows} - expected_test
    assert all(got["train" if p in got["train"] else "test"][p] == str(int(p[1] < 10))
               for p in got["train"] | got["test"])  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fields"] == {"0": "user", "1": "item"}
    assert manifest["test"]["examples"] == len(expected_test)


def test_bookcrossing_test_folds_partition_the_lines(tmp_path):
    # Arrange
    rows = [(u, i, int(i < 5)) for u in range(10) for i in range(10)]
    source = tmp_path / "ratings_final.txt"
    source.write_text("".join(f"{u}\t{i}\t{y}\n" for u, i, y in rows))

    # Act: the five folds.
    tested = []
    for fold in range(5):
        out = tmp_path / f"fold{fold}"
        bookcrossing.main(["--ratings", str(source), "--out", str(out),
                           "--no-check", "--test-fold", str(fold)])  # fmt: skip
        tested.append({(f[14], f[15]) for f in _split_lines(out, "test")})
        assert len(_split_lines(out, "train")) + len(tested[-1]) == len(rows)

    # Assert: each line tests in exactly one fold.
    assert sum(len(t) for t in tested) == len(rows)
    assert len(set().union(*tested)) == len(rows)


@pytest.mark.parametrize(
    "line, message",
    [("1\t2\n", "is not USER ITEM LABEL"), ("1\t2\t3\n", "label 3 is not 0 or 1"),
     ("1\tx\t1\n", "is not USER ITEM LABEL")],
    ids=["two_fields", "label_three", "not_integer"],
)  # fmt: skip
def test_bookcrossing_refuses_lines_it_cannot_read(tmp_path, line, message):
    source = tmp_path / "r.txt"
    source.write_text("0\t1\t1\n" + line)
    with pytest.raises(ValueError, match=f"r.txt:2: .*{message}"):
        bookcrossing.read(source)


def test_lastfm_names_its_fields_and_refuses_other_blob_ids(tmp_path):
    source = tmp_path / "ratings_final.txt"
    source.write_text("0\t1\t1\n0\t2\t0\n")
    with pytest.raises(SystemExit, match="is not one listed"):
        lastfm.main(["--ratings", str(source), "--out", str(tmp_path / "o")])
    lastfm.main(["--ratings", str(source), "--out", str(tmp_path / "o"), "--no-check"])
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["fields"] == {"0": "user", "1": "artist"}
    assert manifest["train"]["examples"] + manifest["test"]["examples"] == 2


def test_amazon_magazine_orders_by_time_and_splits_at_2017(tmp_path):
    # Arrange: item,user,rating,time; out of time order; one day twice.
    cut = amazon_magazine.TEST_FROM
    source = tmp_path / "Magazine_Subscriptions.csv"
    source.write_text(
        f"B2,U1,5,{cut}\n"  # 2017-01-01: test
        f"B1,U2,3,{cut - 86400}\n"  # 2016-12-31: train, a 3 is no click
        f"B1,U1,4.0,{cut - 2 * 86400}\n"  # the first in time
        f"B3,U3,1,{cut - 86400}\n"  # same day as line 2: after it
        f"B1,U4,2,{cut + 86400}\n"
    )
    out = tmp_path / "out"

    # Act
    amazon_magazine.main(["--ratings", str(source), "--out", str(out), "--no-check"])

    # Assert: in time order, items and users numbered by first appearance.
    train, test = _split_lines(out, "train"), _split_lines(out, "test")
    assert [(f[0], f[14], f[15]) for f in train] == [
        ("1", "00000000", "00000000"),  # B1 U1 4 stars
        ("0", "00000000", "00000001"),  # B1 U2
        ("0", "00000001", "00000002"),  # B3 U3
    ]
    assert [(f[0], f[14], f[15]) for f in test] == [
        ("1", "00000002", "00000000"),  # B2 U1: a user training saw
        ("0", "00000000", "00000003"),  # B1 U4: one it did not
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ids"]["user"]["test_examples_unseen"] == 0.5


@pytest.mark.parametrize(
    "line, message",
    [("B1,U1,5\n", "3 fields, expected 4"), ("B1,U1,6,100\n", "rating '6'"),
     ("B1,,5,100\n", "empty item or user"), ("B1,U1,5,1.5\n", "not Unix")],
    ids=["three_fields", "six_stars", "no_user", "fractional_time"],
)  # fmt: skip
def test_amazon_magazine_refuses_lines_it_cannot_read(tmp_path, line, message):
    source = tmp_path / "m.csv"
    source.write_text(line)
    with pytest.raises(ValueError, match=f"m.csv:1: .*{message}"):
        amazon_magazine.read(source)


TALKINGDATA_HEADER = (
    "..ip,app,device,os,channel,click_time,attributed_time,is_attributed"
)


def test_talkingdata_orders_clicks_by_time_and_tests_the_last_day(tmp_path):
    # Arrange: out of time order, two clicks in one second, one on the cut.
    source = tmp_path / "train_sample.csv"
    source.write_text(
        TALKINGDATA_HEADER + "\n"
        "300,12,1,13,497,2017-11-09 00:00:00,,0\n"
        "10,3,1,19,379,2017-11-07 10:00:00,2017-11-07 10:05:00,1\n"
        "11,3,2,19,379,2017-11-06 16:00:00,,0\n"
        "12,25,1,17,259,2017-11-07 10:00:00,,0\n"
    )
    out = tmp_path / "out"

    # Act
    talkingdata.main(["--clicks", str(source), "--out", str(out), "--no-check"])

    # Assert
    train, test = _split_lines(out, "train"), _split_lines(out, "test")
    assert [(f[0], f[14]) for f in train] == [
        ("0", f"{11:08x}"), ("1", f"{10:08x}"), ("0", f"{12:08x}"),
    ]  # fmt: skip
    assert train[1][14:20] == [f"{v:08x}" for v in (10, 3, 1, 19, 379)] + [""]
    assert [(f[0], f[14]) for f in test] == [("0", f"{300:08x}")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ids"]["ip"]["test_examples_unseen"] == 1.0
    assert manifest["ids"]["app"]["train_ids"] == 2


@pytest.mark.parametrize(
    "lines, message",
    [(["ip,app,device,os,channel,click_time,is_attributed"], "1: header"),
     ([TALKINGDATA_HEADER, "1,2,3,4,5,2017-11-07 10:00,,0"], "2: click_time"),
     ([TALKINGDATA_HEADER, "1,2,3,4,x,2017-11-07 10:00:00,,0"], "2: ids"),
     ([TALKINGDATA_HEADER, "1,2,3,4,5,2017-11-07 10:00:00,,2"], "2: is_attributed")],
    ids=["header", "minutes_only", "not_integer", "label_two"],
)  # fmt: skip
def test_talkingdata_refuses_lines_it_cannot_read(tmp_path, lines, message):
    source = tmp_path / "t.csv"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"t.csv:{message}"):
        talkingdata.read(source)


@pytest.mark.parametrize("exponent", [0.9, 1.2, 1.6], ids=["s0.9", "s1.2", "s1.6"])
def test_the_fitted_exponent_gives_back_the_distinct_ids_it_was_fitted_to(exponent):
    # Arrange: the expected distinct ids of a known law, from its definition.
    vocabulary, draws = 50_000, 4_000
    p = np.arange(1, vocabulary + 1, dtype=float) ** -exponent
    p /= p.sum()
    distinct = round(float(np.sum(1 - (1 - p) ** draws)))

    # Act
    fitted, target = calibrate.fit_exponent(vocabulary, distinct, draws, 0.0)

    # Assert
    assert target == "distinct"
    assert fitted == pytest.approx(exponent, abs=0.01)


def test_a_column_that_shows_every_value_is_fitted_by_its_top_share():
    fitted, target = calibrate.fit_exponent(3, 3, 1000, top_share=0.6)
    p = np.arange(1, 4, dtype=float) ** -fitted
    assert target == "top_share"
    assert p[0] / p.sum() == pytest.approx(0.6, abs=1e-6)


def test_the_frontier_keeps_the_points_no_smaller_point_beats():
    points = [(4.0, 0.70), (1.0, 0.60), (2.0, 0.65), (3.0, 0.64), (5.0, 0.66)]
    assert ctr_bench.frontier(points) == [(1.0, 0.60), (2.0, 0.65), (4.0, 0.70)]


def test_a_family_is_interpolated_in_log_bytes_inside_its_sizes_only():
    points = [(1e6, 0.70), (4e6, 0.72)]
    assert ctr_bench._at_bytes(points, 2e6) == pytest.approx(0.71)
    assert ctr_bench._at_bytes(points, 8e6) is None


def _runs_on_shared_examples(shifts: dict[int, float], n: int = 4000) -> dict:
    """Results of a reference and of "other" on the same test examples, per
    seed: "other" moves each positive's score by that seed's shift."""
    rng = np.random.default_rng(0)
    labels = (rng.random(n) < 0.3).astype(np.float32)
    base = labels + rng.normal(size=n)
    results: dict = {"ref": {}, "other": {}}
    for seed, shift in shifts.items():
        results["ref"][seed] = {
            "labels": labels,
            "probabilities": base,
            "auc": metrics.auc(labels, base),
        }
        moved = base + shift * labels
        results["other"][seed] = {
            "labels": labels,
            "probabilities": moved,
            "auc": metrics.auc(labels, moved),
        }
    return results


def test_the_paired_interval_takes_in_how_a_difference_varies_between_seeds():
    # A change that helps on two seeds and hurts more on a third: over the
    # examples alone (seeds fixed) its mean looks like an effect; with the
    # seeds drawn too, the interval holds 0.
    shifts = {0: 0.2, 1: 0.2, 2: -0.3}
    got = ctr_bench._paired(_runs_on_shared_examples(shifts), "ref", list(shifts))
    other = got["other"]
    assert other["examples_low"] > 0
    assert other["low"] < 0 < other["high"]
    assert got["ref"] == {
        "mean": 0.0, "low": 0.0, "high": 0.0, "examples_low": 0.0, "examples_high": 0.0
    }  # fmt: skip


def test_the_paired_interval_is_the_examples_alone_when_every_seed_agrees():
    shifts = {0: 0.1, 1: 0.1, 2: 0.1}
    got = ctr_bench._paired(_runs_on_shared_examples(shifts), "ref", list(shifts))
    other = got["other"]
    assert (other["low"], other["high"]) == pytest.approx(
        (other["examples_low"], other["examples_high"]), abs=1e-12
    )
    assert other["low"] > 0


def _spread(mean: float) -> dict:
    return {"mean": mean, "std": 0.0, "n": 1}


def test_the_targets_compare_adaptive_with_each_family_at_its_bytes():
    # Arrange
    summary = {
        name: {"auc": _spread(auc), "export_bytes": _spread(size)}
        for name, auc, size in [
            ("static/1/4", 0.700, 1e6), ("static/1", 0.720, 4e6),
            ("adaptive/warm", 0.740, 1.5e6),  # an ablation: on no frontier
            ("dynamic", 0.730, 10e6),
            ("filtered/2", 0.715, 3e6), ("filtered/3", 0.705, 1e6),
            ("adaptive/col/3", 0.728, 1.5e6),
        ]
    }  # fmt: skip
    paired = {"dynamic": {"mean": 0.002}}
    late = {"filtered/3": -0.001, "dynamic": 0.0005}

    # Act
    got = ctr_bench.targets(summary, paired, late)

    # Assert
    assert got["export_vs_dynamic"] == {"value": 0.15, "met": True}
    assert got["auc_vs_dynamic"] == {"value": -0.002, "met": True}
    static_at = 0.700 + 0.020 * np.log(1.5) / np.log(4)
    assert got["auc_vs_static_at_bytes"]["value"] == pytest.approx(0.728 - static_at)
    filtered_at = 0.705 + 0.010 * np.log(1.5) / np.log(3)
    assert got["auc_vs_filtered_at_bytes"]["value"] == pytest.approx(
        0.728 - filtered_at
    )
    assert got["late_vs_filtered"] == {"value": 0.001, "met": True}
    assert got["late_vs_dynamic"] == {"value": -0.0005, "met": False}


@pytest.mark.slow
def test_the_claim_bench_runs_end_to_end_on_a_small_synthetic_set(
    tmp_path, monkeypatch, capsys
):
    # Arrange: the data sets in a temporary cache, small.
    monkeypatch.setenv("ADAPTIVE_JAX_DATA", str(tmp_path / "cache" / "synthetic"))
    out = tmp_path / "claim"

    # Act
    ctr_bench.main(
        ["--data", "synthetic", "--quick", "--num-train", "3000", "--num-test",
         "1000", "--out", str(out)]
    )  # fmt: skip

    # Assert: every run recorded, tuned on validation, and the claim's parts.
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in runs} == {"tune", "test"}
    assert {r["test_examples"] for r in runs if r["stage"] == "tune"} == {450}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tuned"]) == set(ctr_bench.FAMILIES)
    assert set(summary["targets"]) == {
        "export_vs_dynamic", "auc_vs_dynamic", "auc_vs_static_at_bytes",
        "auc_vs_filtered_at_bytes", "late_vs_filtered", "late_vs_dynamic",
    }  # fmt: skip
    assert summary["paired_vs_adaptive"]["adaptive/col/3"]["mean"] == 0.0
    assert "| head to head |" in (out / "claim.md").read_text()
    assert (out / "frontier.png").read_bytes().startswith(b"\x89PNG")

    # Act again: every run is reused, none trained anew.
    capsys.readouterr()
    ctr_bench.main(
        ["--data", "synthetic", "--quick", "--num-train", "3000", "--num-test",
         "1000", "--out", str(out)]
    )  # fmt: skip
    assert '"stage": "test"' not in capsys.readouterr().out
