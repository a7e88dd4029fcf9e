"""Builds TalkingData's sample of mobile ad clicks, split by time, in the
Criteo text format: label 1 for a click that led to the app's download.

Run: `python benchmarks/data/talkingdata.py --clicks train_sample.csv [--out
DIR]` with the file that `benchmarks/data/README.md` says how to fetch; it
writes `train.txt.gz`, `test.txt.gz` and `manifest.json` into DIR (default:
`talkingdata` in the user's cache).

The source is the `train_sample.csv` of Kaggle's TalkingData AdTracking
Fraud Detection Challenge (2018): 100,000 clicks drawn from four days (6-9
November 2017, UTC), one a line: `ip,app,device,os,channel,click_time,
attributed_time,is_attributed`, after a header line. Lines are put in click
time order (ties keep the file's order) and split at 2017-11-09 00:00: the
last day tests. The five ids go to C1..C5 as integers in 8 hex digits (ip's
long tail: most of its values are seen once or twice); the rest is empty.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _sources  # noqa: E402

NAME = "talkingdata"
FIELDS = ("ip", "app", "device", "os", "channel")
HEADER = (*FIELDS, "click_time", "attributed_time", "is_attributed")
# yxjsxy/app_download_prediction's train_sample.csv (its header's first name
# reads "..ip"; the rows are Kaggle's)
BLOBS = {"e3424766a656dc684ff0b97c73acd2d39dc1af83"}
TEST_FROM = "2017-11-09 00:00:00"
_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def read(path: pathlib.Path) -> list[tuple[str, list[int], int]]:
    """The clicks as `(click time, ids, label)`, in time order."""
    rows = []
    with path.open(newline="") as stream:
        lines = csv.reader(stream)
        header = next(lines, [])
        if len(header) != len(HEADER) or not (
            header[0].endswith("ip") and tuple(header[1:]) == HEADER[1:]
        ):
            raise ValueError(f"{path}:1: header {header} is not {list(HEADER)}")
        for number, fields in enumerate(lines, 2):
            where = f"{path}:{number}"
            if len(fields) != len(HEADER):
                raise ValueError(
                    f"{where}: {len(fields)} fields, expected {len(HEADER)}"
                )
            ids, time, label = fields[:5], fields[5], fields[7]
            if not all(value.isdigit() for value in ids):
                raise ValueError(f"{where}: ids {ids} are not all integers")
            if not _TIME.fullmatch(time):
                raise ValueError(f"{where}: click_time {time!r} is not "
                                 "YYYY-MM-DD HH:MM:SS")  # fmt: skip
            if label not in ("0", "1"):
                raise ValueError(f"{where}: is_attributed {label!r} is not 0 or 1")
            rows.append((time, [int(value) for value in ids], int(label)))
    return sorted(rows, key=lambda row: row[0])  # stable: ties keep their order


def split(rows: list[tuple[str, list[int], int]]) -> dict[str, list[str]]:
    """The clicks as Criteo lines, before and from `TEST_FROM`."""
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for time, ids, label in rows:
        line = _sources.criteo_line(label, [f"{value:08x}" for value in ids])
        splits["test" if time >= TEST_FROM else "train"].append(line)
    return splits


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clicks", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--no-check", action="store_true",
                   help="accept a source file of another blob id")  # fmt: skip
    args = p.parse_args(argv)
    if not args.no_check:
        _sources.check_blobs([args.clicks], BLOBS)
    splits = split(read(args.clicks))
    manifest = {
        "fields": dict(enumerate(FIELDS)),
        "test_from": TEST_FROM,
        "ids": _sources.id_counts(splits, FIELDS),
    }
    out = args.out or _sources.default_out(NAME)
    print(_sources.write_splits(out, splits, manifest))


if __name__ == "__main__":
    main(sys.argv[1:])
