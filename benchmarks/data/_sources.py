"""What the real data sets' converters share: sources checked by their Git blob
ids, and splits written as gzip files of the Criteo text format with a
manifest of their SHA-256, so that everyone builds the same files."""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib
import sys
from collections.abc import Iterable, Mapping, Sequence

NUM_INTEGERS, NUM_CATEGORIES = 13, 26  # the Criteo format's I1..I13, C1..C26


def blob_id(path: pathlib.Path) -> str:
    """Git's blob id of a file: SHA-1 of `blob <size>\\0` and the bytes."""
    content = path.read_bytes()
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def check_blobs(paths: Iterable[pathlib.Path], expected: set[str]) -> None:
    """Exits naming the first file whose blob id is not one of `expected`."""
    for path in paths:
        if blob_id(path) not in expected:
            sys.exit(
                f"{path}: blob id {blob_id(path)} is not one listed in "
                "benchmarks/data/README.md (--no-check to go on)"
            )


def criteo_line(label: int, categories: Sequence[str]) -> str:
    """A line of the Criteo text format with no integer feature and these
    categorical values in C1.. (the rest empty)."""
    if label not in (0, 1):
        raise ValueError(f"label {label!r} is not 0 or 1")
    if len(categories) > NUM_CATEGORIES:
        raise ValueError(f"{len(categories)} categorical fields, at most 26 fit")
    padded = list(categories) + [""] * (NUM_CATEGORIES - len(categories))
    return "\t".join([str(label)] + [""] * NUM_INTEGERS + padded)


def write_splits(
    out: pathlib.Path, splits: Mapping[str, list[str]], manifest: dict
) -> dict:
    """Writes each split's lines to `out/<split>.txt.gz` (reproducible bytes:
    no time stamp) and `out/manifest.json`; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        text = "".join(line + "\n" for line in lines).encode()
        with gzip.GzipFile(out / f"{split}.txt.gz", "wb", mtime=0) as stream:
            stream.write(text)
        manifest[split] = {
            "examples": len(lines),
            "positives": sum(line.startswith("1") for line in lines),
            "sha256": hashlib.sha256(text).hexdigest(),
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def default_out(name: str) -> pathlib.Path:
    """`name` in the user's cache of data sets, where the benchmarks look."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from adaptive_jax import data

    return data.default_directory().parent / name
