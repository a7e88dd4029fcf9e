"""What the real data sets' converters share: sources checked by their Git blob
ids, and splits written as gzip files of the Criteo text format with a
manifest of their SHA-256, so that everyone builds the same files."""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib
import sys
from collections import Counter
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


def first_seen_ids(values: Iterable[str]) -> dict[str, str]:
    """Each distinct value's index in order of first appearance, as 8 hex
    digits (Criteo's form): ids that keep the values apart and say nothing
    else."""
    ids: dict[str, str] = {}
    for value in values:
        if value not in ids:
            ids[value] = f"{len(ids):08x}"
    return ids


def stable_order(key: str) -> str:
    """A line's place in a fixed pseudo-random order (SHA-256 of its key):
    the same on every machine and Python, unlike a seeded shuffle."""
    return hashlib.sha256(key.encode()).hexdigest()


def id_counts(splits: Mapping[str, list[str]], fields: Sequence[str]) -> dict:
    """Per field (C1.. in order): distinct ids in training, the share of them
    seen fewer than 3 times there, the click rate of an id's first two
    training examples and of its later ones (sampled negatives make the first
    ones low), and the share of test examples whose id training never saw;
    and the share of test examples with any such id."""
    first = 1 + NUM_INTEGERS
    rows = {
        split: [line.split("\t")[first : first + len(fields)] for line in lines]
        for split, lines in splits.items()
    }
    counts = {}
    unseen_any = [False] * len(rows["test"])
    for i, name in enumerate(fields):
        seen: Counter[str] = Counter()
        clicks = {True: [0, 0], False: [0, 0]}  # early?: [examples, clicks]
        for line, row in zip(splits["train"], rows["train"], strict=True):
            if row[i]:
                seen[row[i]] += 1
                early = clicks[seen[row[i]] <= 2]
                early[0] += 1
                early[1] += line.startswith("1")
        unseen = [bool(row[i]) and row[i] not in seen for row in rows["test"]]
        unseen_any = [a or b for a, b in zip(unseen_any, unseen, strict=True)]
        counts[name] = {
            "train_ids": len(seen),
            "train_ids_seen_under_3": _share(
                sum(c < 3 for c in seen.values()), len(seen)
            ),
            "click_rate_first_2": _share(clicks[True][1], clicks[True][0]),
            "click_rate_later": _share(clicks[False][1], clicks[False][0]),
            "test_ids": len({row[i] for row in rows["test"] if row[i]}),
            "test_examples_unseen": _share(sum(unseen), len(unseen)),
        }
    counts["test_examples_any_unseen"] = _share(sum(unseen_any), len(unseen_any))
    return counts


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


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
