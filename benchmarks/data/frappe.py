"""Builds the frappe set (context-aware app recommendation, with 2 sampled
negatives per positive) in the Criteo text format, from the libFM files of the
NFM paper's repository.

Run: `python benchmarks/data/frappe.py --train frappe.validation.libfm --test
frappe.test.libfm [--out DIR]` with the files that `benchmarks/data/README.md`
says how to fetch. The NFM split's training file (over 4 MB) is not used: its
validation file (57,722 lines) is the training split, its test file (28,860)
the test split, as the issue that measured the migration did.

Each libFM line is a label (1 or -1) and 10 one-hot features, one per field in
a fixed order (user, item, daytime, weekday, isweekend, homework, cost,
weather, country, city), each field's indices a contiguous range. Field i goes
to the Criteo column C(i+1) as the feature's global index in 8 hex digits
(Criteo's form); C11..C26 and the integers stay empty. Lines keep the file's
order (the NFM split is random: no time order).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _sources  # noqa: E402

FIELDS = (
    "user", "item", "daytime", "weekday", "isweekend", "homework", "cost",
    "weather", "country", "city",
)  # fmt: skip
BLOBS = {
    "train": {"50b9c04bcf58dcb46d0b0070d3d6f88b45c9baab"},  # frappe.validation.libfm
    "test": {"d7cdd03f0e2415c97618de617f20bedd50e8fce7"},  # frappe.test.libfm
}


def convert_line(line: str, where: str) -> str:
    """One libFM line of frappe as a Criteo line (C1..C10 its fields)."""
    label, *features = line.split()
    if label not in ("1", "-1"):
        raise ValueError(f"{where}: label {label!r} is not 1 or -1")
    if len(features) != len(FIELDS):
        raise ValueError(f"{where}: {len(features)} features, expected {len(FIELDS)}")
    values = []
    for feature in features:
        index, _, value = feature.partition(":")
        if value != "1" or not index.isdigit():
            raise ValueError(f"{where}: {feature!r} is not a one-hot INDEX:1")
        values.append(f"{int(index):08x}")
    return _sources.criteo_line(int(label == "1"), values)


def convert(path: pathlib.Path) -> list[str]:
    with path.open() as stream:
        return [
            convert_line(line, f"{path}:{number}")
            for number, line in enumerate(stream, 1)
            if line.strip()
        ]


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=pathlib.Path, required=True)
    p.add_argument("--test", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--no-check", action="store_true",
                   help="accept source files of other blob ids")  # fmt: skip
    args = p.parse_args(argv)
    if not args.no_check:
        _sources.check_blobs([args.train], BLOBS["train"])
        _sources.check_blobs([args.test], BLOBS["test"])
    splits = {"train": convert(args.train), "test": convert(args.test)}
    out = args.out or _sources.default_out("frappe")
    manifest = _sources.write_splits(out, splits, {"fields": dict(enumerate(FIELDS))})
    print(manifest)


if __name__ == "__main__":
    main(sys.argv[1:])
