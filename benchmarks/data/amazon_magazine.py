"""Builds Amazon's Magazine Subscriptions ratings, split by time, in the
Criteo text format: label 1 for a rating of 4 or 5 stars.

Run: `python benchmarks/data/amazon_magazine.py --ratings
Magazine_Subscriptions.csv [--out DIR]` with the file that
`benchmarks/data/README.md` says how to fetch; it writes `train.txt.gz`,
`test.txt.gz` and `manifest.json` into DIR (default: `amazon_magazine` in the
user's cache).

The source is the ratings-only CSV of the Amazon review data (2018 edition,
McAuley lab): `item,user,rating,timestamp` without a header, one line per
review, the time a day in Unix seconds. Lines are put in time order (lines of
one day keep the file's order) and split at the start of 2017 (UTC): the
reviews of 2001-2016 train, those of 2017-2018 test. Most reviewers review
once, so most test examples come from users training never saw. The item goes
to C1 and the user to C2, each as its index in order of first appearance in
time, in 8 hex digits; the rest is empty. Repeated (user, item) reviews stay.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _sources  # noqa: E402

NAME = "amazon_magazine"
FIELDS = ("item", "user")
BLOBS = {"346ce86cf9114a56b8bb82494bc0cfa873fbfc6b"}  # Magazine_Subscriptions.csv
TEST_FROM = 1_483_228_800  # 2017-01-01 00:00 UTC
POSITIVE_FROM = 4  # stars


def read(path: pathlib.Path) -> list[tuple[int, str, str, int]]:
    """The source's reviews as `(time, item, user, label)`, in time order."""
    rows = []
    with path.open(newline="") as stream:
        for number, fields in enumerate(csv.reader(stream), 1):
            where = f"{path}:{number}"
            if len(fields) != 4:
                raise ValueError(f"{where}: {len(fields)} fields, expected 4 "
                                 "(item,user,rating,timestamp)")  # fmt: skip
            item, user, rating, time = fields
            if not (item and user):
                raise ValueError(f"{where}: an empty item or user")
            if _stars(rating) not in (1, 2, 3, 4, 5):
                raise ValueError(f"{where}: rating {rating!r} is not 1 to 5 stars")
            if not time.isdigit():
                raise ValueError(f"{where}: timestamp {time!r} is not Unix seconds")
            label = int(_stars(rating) >= POSITIVE_FROM)
            rows.append((int(time), item, user, label))
    return sorted(rows, key=lambda row: row[0])  # stable: a day keeps its order


def _stars(rating: str) -> float:
    try:
        return float(rating)
    except ValueError:
        return 0.0


def split(rows: list[tuple[int, str, str, int]]) -> dict[str, list[str]]:
    """The reviews as Criteo lines, before and from `TEST_FROM`."""
    items = _sources.first_seen_ids(row[1] for row in rows)
    users = _sources.first_seen_ids(row[2] for row in rows)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for time, item, user, label in rows:
        line = _sources.criteo_line(label, [items[item], users[user]])
        splits["test" if time >= TEST_FROM else "train"].append(line)
    return splits


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--no-check", action="store_true",
                   help="accept a source file of another blob id")  # fmt: skip
    args = p.parse_args(argv)
    if not args.no_check:
        _sources.check_blobs([args.ratings], BLOBS)
    splits = split(read(args.ratings))
    manifest = {
        "fields": dict(enumerate(FIELDS)),
        "test_from_unix_time": TEST_FROM,
        "positive_from_stars": POSITIVE_FROM,
        "ids": _sources.id_counts(splits, FIELDS),
    }
    out = args.out or _sources.default_out(NAME)
    print(_sources.write_splits(out, splits, manifest))


if __name__ == "__main__":
    main(sys.argv[1:])
