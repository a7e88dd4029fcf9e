"""Builds the Last.fm set with sampled negatives (one per positive) in the
Criteo text format, from the `ratings_final.txt` of the KGCN papers'
preprocessing of HetRec 2011's Last.fm listening counts.

Run: `python benchmarks/data/lastfm.py --ratings ratings_final.txt [--out
DIR]` with the file that `benchmarks/data/README.md` says how to fetch; it
writes `train.txt.gz`, `test.txt.gz` and `manifest.json` into DIR (default:
`lastfm` in the user's cache).

The source has the form, and goes through the same split, as Book-Crossing's
(`bookcrossing.py`): label 1 for an artist the user listened to, 0 for one
drawn from those the user did not, as many as the positives; a fifth of the
lines, by the SHA-256 of `user<TAB>item`, test; user in C1, artist in C2.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bookcrossing  # noqa: E402

NAME = "lastfm"
FIELDS = ("user", "artist")
# KBGCN's data/music/ratings_final.txt
BLOBS = {"636fecdaab6a3bdd452b2c83a0fc6f8be16d7ef3"}


def main(argv: list[str]) -> None:
    bookcrossing.build(argv, NAME, FIELDS, BLOBS, __doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
