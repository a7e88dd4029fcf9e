"""Builds the real Criteo slice of the claim from public copies of Criteo's rows.

Run: `python benchmarks/data/criteo_slice.py --head HEAD.csv --kaggle-csv
TR_RX.csv VA_RX.csv TR_R100000.csv VA_R100000.csv [--out DIR]` with the files
that `benchmarks/data/README.md` says how to fetch. It writes `train.txt.gz`
and `test.txt.gz` (the Criteo text format: label, 13 integers, 26 hex values,
tab-separated) into DIR (default: `criteo_slice` in the user's cache, where
`benchmarks/ctr_bench.py --data real` looks), and `manifest.json` with what it
kept.

The rows are rows of Criteo's Kaggle `train.txt`, each placed by its Kaggle
`Id` (line `Id - 10,000,000` of `train.txt`, in time order): the head file
holds the first lines (its row i is Id 10,000,000 + i); the Kaggle CSVs hold
their Ids. Rows are normalised ("260.0" -> "260"), a row given twice (the same
Id) must be the same row, and rows are written in Id order. The split is by
time: Ids before 49,800,000 (the first six and a half days) train, the rest
(the end of the seventh day) test. A source file whose Git blob id is not the
one the README lists is refused, so that everyone builds the same slice.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import pathlib
import sys
from collections.abc import Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _sources  # noqa: E402

FIRST_ID = 10_000_000  # the Id of train.txt's first line
TEST_FROM_ID = 49_800_000
BLOBS = {  # the sources' Git blob ids (README), their checksums
    "head": {"4b958d41dab6bdd12bc39100b6729333efaeb2b1"},
    "kaggle": {
        "021f5f9a2c09a6daf4778934d71069df49e8ade8",  # tr.rx.csv
        "df2ea6573d5abe13ef05e24cca754818d2a9aa00",  # va.rx.csv
        "53d91d7c55bac66e94c5657ec8bff8403ea9191f",  # tr.r100000.csv
        "62cf77c49ec823ba1def5fd2e982344249c922e4",  # va.r100000.csv
    },
}
INTEGERS = [f"I{i}" for i in range(1, 14)]
CATEGORIES = [f"C{i}" for i in range(1, 27)]


def _integer(text: str) -> str:
    text = text.strip()
    if text in ("", "nan"):
        return ""
    number = float(text)
    if number != int(number):
        raise ValueError(f"integer field {text!r} is not an integer")
    return str(int(number))


def _row(fields: dict[str, str]) -> str:
    """A CSV row (by column name) as a line of the Criteo text format."""
    label = _integer(fields.get("Label", fields.get("label", "")))
    if label not in ("0", "1"):
        raise ValueError(f"label {label!r} is not 0 or 1")
    values = [_integer(fields[k]) for k in INTEGERS]
    values += [fields[k].strip() for k in CATEGORIES]
    return "\t".join([label, *values])


def _csv_rows(path: pathlib.Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as stream:
        yield from csv.DictReader(stream)


def collect(head: pathlib.Path, kaggle: list[pathlib.Path]) -> dict[int, str]:
    """Every source row by its Kaggle Id, checked for conflicts."""
    rows: dict[int, str] = {}

    def add(row_id: int, line: str, where: str) -> None:
        if rows.setdefault(row_id, line) != line:
            raise ValueError(f"{where}: Id {row_id} differs from an earlier copy")

    for i, fields in enumerate(_csv_rows(head)):
        add(FIRST_ID + i, _row(fields), f"{head}:{i + 2}")
    for path in kaggle:
        for i, fields in enumerate(_csv_rows(path)):
            add(int(fields["Id"]), _row(fields), f"{path}:{i + 2}")
    return rows


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--head", type=pathlib.Path, required=True)
    p.add_argument("--kaggle-csv", type=pathlib.Path, nargs="+", required=True)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--no-check", action="store_true",
                   help="accept source files of other blob ids")  # fmt: skip
    args = p.parse_args(argv)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from adaptive_jax import data

    out = args.out or data.default_directory().parent / "criteo_slice"
    if not args.no_check:
        _sources.check_blobs([args.head], BLOBS["head"])
        _sources.check_blobs(args.kaggle_csv, BLOBS["kaggle"])
    rows = collect(args.head, args.kaggle_csv)
    ids = sorted(rows)
    splits = {
        "train": [i for i in ids if i < TEST_FROM_ID],
        "test": [i for i in ids if i >= TEST_FROM_ID],
    }
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"first_id": FIRST_ID, "test_from_id": TEST_FROM_ID}
    for split, chosen in splits.items():
        text = "".join(rows[i] + "\n" for i in chosen).encode()
        with gzip.GzipFile(out / f"{split}.txt.gz", "wb", mtime=0) as stream:
            stream.write(text)
        positives = sum(rows[i].startswith("1") for i in chosen)
        manifest[split] = {
            "examples": len(chosen), "positives": positives,
            "first_id": chosen[0], "last_id": chosen[-1],
            "sha256": hashlib.sha256(text).hexdigest(),
        }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main(sys.argv[1:])
