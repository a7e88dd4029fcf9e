"""A streaming reader of the Criteo click logs' text format.

One example per line, tab-separated: a 0/1 label, 13 integer features
`I1..I13` and 26 categorical features `C1..C26` (hex strings such as
`68fd1e64`); an empty field is a missing value. Files are plain text or gzip
(told apart by their first bytes, not their names). `CriteoReader` reads one
or many files, or directories of them, a chunk of lines at a time, so that
memory stays bounded whatever their size, and yields `Batch`es of a fixed
size. A malformed line is skipped, counted and reported with a warning that
names its file and line; the lines around it are read. A line holding a NUL
byte is malformed: no Criteo value holds one, and a value such as `ab\\x00`
must not be read as the id `ab`.

Example:

  >>> import pathlib, tempfile
  >>> path = pathlib.Path(tempfile.mkdtemp()) / "day_0.txt"
  >>> line = "\\t".join(["1", "5", "-1"] + [""] * 11 + ["68fd1e64"] * 26)
  >>> _ = path.write_text(line + "\\n" + line.replace("1", "0", 1) + "\\n")
  >>> reader = CriteoReader(path, batch_size=2)
  >>> batch = next(iter(reader))
  >>> batch.labels.tolist(), batch.dense[:, :3].tolist()
  ([1.0, 0.0], [[5.0, -1.0, 0.0], [5.0, -1.0, 0.0]])
  >>> batch.dense_missing[0, :3].tolist(), batch.categorical["C1"][:, 0].tolist()
  ([False, False, True], ['68fd1e64', '68fd1e64'])
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import math
import os
import pathlib
import re
import warnings
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import BinaryIO

import numpy as np

from adaptive_jax.data import _batch, _parse
from adaptive_jax.data._batch import CATEGORICAL_COLUMNS as CATEGORICAL_COLUMNS
from adaptive_jax.data._batch import INTEGER_COLUMNS as INTEGER_COLUMNS
from adaptive_jax.data._batch import Batch as Batch

PathLike = str | os.PathLike
READ_LINES = 4096  # lines parsed at once: memory is bounded by this, and a batch
SIDE_FILE_SUFFIXES = (".json", ".npy", ".npz")  # in a directory, not data
_GZIP_MAGIC = b"\x1f\x8b"


class MalformedLineWarning(UserWarning):
    """A line of a Criteo file was skipped: it does not parse."""


class UnusualValueWarning(UserWarning):
    """A line of a Criteo file was kept, but a categorical value is not
    hexadecimal, as Criteo's are: likely a file of another format."""


class CriteoReader:
    """Batches of examples from Criteo files, read lazily, in order.

    Iterate over the reader to get the batches; each pass reads the files again
    from the start. After (or during) a pass, `examples` and `malformed` count
    the examples yielded and the lines skipped in that pass.

    Attributes:
      files: the data files, in the order they are read.
      examples: examples yielded so far in the current pass.
      malformed: malformed lines skipped so far in the current pass.
    """

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        batch_size: int,
        drop_remainder: bool = False,
        limit: int | None = None,
        skip_lines: int = 0,
        max_warnings_per_file: int = 10,
    ):
        """Checks the options and lists the files; reads nothing yet.

        Args:
          paths: a file, a directory, or a sequence of them. A directory
            stands for its regular files, in natural order (`day_2` before
            `day_10`), except hidden ones (".x"), "_"-prefixed ones (such as
            `_SUCCESS`) and side files (`.json`, `.npy`, `.npz`).
          batch_size: examples per batch.
          drop_remainder: leave out the last batch if it is short.
          limit: stop after this many examples; None for all.
          skip_lines: lines to pass over, unparsed, at the start of the stream
            (across files), to resume a stream or to split one file in two.
          max_warnings_per_file: malformed lines reported one by one, per file;
            past it, one warning at the end of the file gives the total.

        Raises:
          FileNotFoundError: a path does not exist.
          ValueError: a directory holds no data file, or an option is out of
            range; the message names it.
        """
        for name, value, least in (
            ("batch_size", batch_size, 1),
            ("limit", 0 if limit is None else limit, 0),
            ("skip_lines", skip_lines, 0),
            ("max_warnings_per_file", max_warnings_per_file, 0),
        ):
            if value < least:
                raise ValueError(f"CriteoReader: {name}={value}, must be >= {least}")
        self.files = data_files(paths)
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.limit = limit
        self.skip_lines = skip_lines
        self.max_warnings_per_file = max_warnings_per_file
        self.examples = 0
        self.malformed = 0
        self.unusual = 0

    def __iter__(self) -> Iterator[Batch]:
        self.examples = self.malformed = self.unusual = 0
        for batch in _rebatch(self._pieces(), self.batch_size, self.drop_remainder):
            self.examples += batch.size
            yield batch

    def _pieces(self) -> Iterator[Batch]:
        """The parsed chunks of every file, in order, after `skip_lines`, up to
        `limit` examples; no line past the limit's is read."""
        to_skip = self.skip_lines
        left = math.inf if self.limit is None else self.limit
        for path in self.files:
            if left == 0:
                return
            with _open(path) as stream:
                skipped = sum(1 for _ in itertools.islice(stream, to_skip))
                to_skip -= skipped
                left = yield from self._file_pieces(path, stream, skipped + 1, left)

    def _file_pieces(
        self, path: pathlib.Path, stream: BinaryIO, first_line: int, left: float
    ) -> Generator[Batch, None, float]:
        """Parses one file's lines, a chunk at a time, until its end or until
        `left` examples; reports bad lines. Returns the examples still left."""
        reported = {MalformedLineWarning: 0, UnusualValueWarning: 0}
        while left > 0 and (lines := _read_lines(path, stream, min(READ_LINES, left))):
            chunk = b"".join(lines)
            if not chunk.endswith(b"\n"):
                chunk += b"\n"
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n")
            piece, problems, notes = _parse.parse(chunk)
            for category, found, prefix in (
                (MalformedLineWarning, problems, "skipped: "),
                (UnusualValueWarning, notes, ""),
            ):
                for line, reason in found:
                    reported[category] += 1
                    if reported[category] <= self.max_warnings_per_file:
                        message = f"{path}:{first_line + line}: {prefix}{reason}"
                        warnings.warn(message, category, stacklevel=2)
            self.malformed += len(problems)
            self.unusual += len(notes)
            first_line += len(lines)
            left -= piece.size
            yield piece
        for category, what in (
            (MalformedLineWarning, "skipped {} malformed lines"),
            (UnusualValueWarning, "kept {} lines with values that are not hexadecimal"),
        ):
            if reported[category] > self.max_warnings_per_file:
                message = (
                    f"{path}: {what.format(reported[category])} in all; only the "
                    f"first {self.max_warnings_per_file} were reported"
                )
                warnings.warn(message, category, stacklevel=2)
        return left


def log_transform(dense: np.ndarray) -> np.ndarray:
    """`log1p(max(x, 0))`, float32: integer counts on a scale a model takes.

    Criteo's integer features are heavy-tailed counts (a few in the millions)
    and some are negative; this squashes them to [0, ~15] and maps missing (0)
    and negative values to 0.

    Example:

      >>> log_transform(np.array([[-3.0, 0.0, np.e - 1]])).round(3).tolist()
      [[0.0, 0.0, 1.0]]
    """
    return np.log1p(np.maximum(dense, 0)).astype(np.float32)


def data_files(paths: PathLike | Sequence[PathLike]) -> tuple[pathlib.Path, ...]:
    """The data files that `paths` stand for (see `CriteoReader`), in order.

    Raises:
      FileNotFoundError: a path does not exist.
      ValueError: no path is given, or a directory holds no data file.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise ValueError("no Criteo files given: paths is empty")
    files = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found = sorted(filter(_is_data_file, path.iterdir()), key=_natural_key)
            if not found:
                raise ValueError(
                    f"{path}: no data files in this directory (hidden, '_' and "
                    f"{'/'.join(SIDE_FILE_SUFFIXES)} files do not count)"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such Criteo file or directory")
    return tuple(files)


def _is_data_file(path: pathlib.Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith((".", "_"))
        and path.suffix not in SIDE_FILE_SUFFIXES
    )


def _natural_key(path: pathlib.Path) -> list[str | int]:
    """Sorts `day_2` before `day_10`: runs of digits compare as numbers."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


@contextlib.contextmanager
def _open(path: pathlib.Path) -> Iterator[BinaryIO]:
    """The file's bytes, gunzipped if it starts with gzip's magic number."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw) as stream:
            yield stream


def _read_lines(path: pathlib.Path, stream: BinaryIO, count: float) -> list[bytes]:
    """The next `count` lines, fewer at the end of the file.

    Raises:
      ValueError: the gzip stream is corrupt or cut short; names the file.
    """
    try:
        return list(itertools.islice(stream, int(count)))
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip file: {error}") from error


def _rebatch(
    pieces: Iterable[Batch], batch_size: int, drop_remainder: bool
) -> Iterator[Batch]:
    """Regroups pieces of any sizes into batches of exactly `batch_size`; the
    last is shorter, or dropped with `drop_remainder`."""
    pending, count = [], 0
    for piece in pieces:
        pending.append(piece)
        count += piece.size
        if count < batch_size:
            continue
        merged = _batch.concatenate(pending)
        start = 0
        while count - start >= batch_size:
            yield _batch.take(merged, start, start + batch_size)
            start += batch_size
        pending = [_batch.take(merged, start, count)]
        count -= start
    if count and not drop_remainder:
        yield _batch.concatenate(pending)
