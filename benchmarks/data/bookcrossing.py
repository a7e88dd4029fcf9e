"""Builds the Book-Crossing set with sampled negatives (one per positive) in
the Criteo text format, from the `ratings_final.txt` of the KGCN papers'
preprocessing.

Run: `python benchmarks/data/bookcrossing.py --ratings ratings_final.txt
[--out DIR]` with the file that `benchmarks/data/README.md` says how to
fetch; it writes `train.txt.gz`, `test.txt.gz` and `manifest.json` into DIR
(default: `bookcrossing` in the user's cache).

Each line of the source is `user<TAB>item<TAB>label`: label 1 for a book the
user rated (explicitly or implicitly), 0 for one drawn at random from the
books the user did not rate, as many as the user's positives (RippleNet's
`preprocess.py`, seed 555). The source's lines come grouped by user,
positives first, so they are put in a fixed pseudo-random order (SHA-256 of
`user<TAB>item`) and a fifth of them, by that hash, is the test split: a
random split, as the papers made, with no time order to keep. The user goes
to C1 and the item to C2, each its index in 8 hex digits; the rest is empty.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _sources  # noqa: E402

NAME = "bookcrossing"
FIELDS = ("user", "item")
# KBGCN's data/book/ratings_final.txt
BLOBS = {"91cc60ad687027d8188e81405409baf990a0535b"}
TEST_EVERY = 5  # a line whose hash is `fold` mod this is a test line


def read(path: pathlib.Path) -> list[tuple[int, int, int]]:
    """The source's `(user, item, label)` lines, checked."""
    rows = []
    with path.open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3 or not all(f.isdigit() for f in fields):
                raise ValueError(
                    f"{path}:{number}: {line.strip()!r} is not USER ITEM LABEL "
                    "(three non-negative integers)"
                )
            user, item, label = map(int, fields)
            if label not in (0, 1):
                raise ValueError(f"{path}:{number}: label {label} is not 0 or 1")
            rows.append((user, item, label))
    return rows


def split(rows: list[tuple[int, int, int]], fold: int = 0) -> dict[str, list[str]]:
    """The rows as Criteo lines, in the hash's order, a fifth of them test:
    those whose hash is `fold` mod `TEST_EVERY` (0, the default split; the
    others give the four other splits of the same lines)."""
    keyed = sorted(
        (_sources.stable_order(f"{user}\t{item}"), user, item, label)
        for user, item, label in rows
    )
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for key, user, item, label in keyed:
        where = "test" if int(key[:8], 16) % TEST_EVERY == fold else "train"
        line = _sources.criteo_line(label, [f"{user:08x}", f"{item:08x}"])
        splits[where].append(line)
    return splits


def build(argv: list[str], name: str, fields: tuple[str, str], blobs: set[str],
          description: str) -> None:  # fmt: skip
    """The command line of this converter and of those of the same source
    form: checks the file, splits it, writes the splits into `name`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--ratings", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument(
        "--test-fold",
        type=int,
        default=0,
        choices=range(TEST_EVERY),
        help="the fifth of the lines that tests (0: the default)",
    )
    p.add_argument("--no-check", action="store_true",
                   help="accept a source file of another blob id")  # fmt: skip
    args = p.parse_args(argv)
    if not args.no_check:
        _sources.check_blobs([args.ratings], blobs)
    splits = split(read(args.ratings), args.test_fold)
    manifest = {
        "fields": dict(enumerate(fields)),
        "test_every": TEST_EVERY,
        "test_fold": args.test_fold,
    }
    manifest["ids"] = _sources.id_counts(splits, fields)
    out = args.out or _sources.default_out(name)
    print(_sources.write_splits(out, splits, manifest))


def main(argv: list[str]) -> None:
    build(argv, NAME, FIELDS, BLOBS, __doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
