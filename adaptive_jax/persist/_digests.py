"""The size and CRC-32 of each file of a checkpoint's items, checked before
orbax reads them.

orbax reads a checkpoint's arrays concurrently; when one read fails (a
truncated or corrupted file) it closes its event loop while the others are
still under way, and each of them then prints a traceback ("Event loop is
closed", "Task exception was never retrieved"): hundreds of lines for one bad
file. So `Checkpointer` writes, once orbax has finished a save, the size and
CRC-32 of every file of the saved items (`FILE` in the step's directory), and a
restore checks them first: a damaged file is refused, by name, before orbax
reads anything. orbax's own checks stay behind it for whatever this misses (a
checkpoint saved before this file existed is read as before).
"""

from __future__ import annotations

import json
import pathlib
import zlib

FILE = "aj_file_digests.json"
ITEMS = ("state", "manifest")  # the step's sub-directories that orbax writes once
_BLOCK = 1 << 22


def _crc32(path: pathlib.Path) -> int:
    crc = 0
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        path
        for item in ITEMS
        if (step_dir / item).is_dir()
        for path in (step_dir / item).rglob("*")
        if path.is_file()
    )


def write(step_dir: pathlib.Path) -> None:
    """Records the size and CRC-32 of the items' files of a finished save."""
    digests = {
        str(path.relative_to(step_dir)): [path.stat().st_size, _crc32(path)]
        for path in _files(step_dir)
    }
    (step_dir / FILE).write_text(json.dumps(digests, sort_keys=True))


def problem(step_dir: pathlib.Path) -> str | None:
    """What is wrong with the items' files, by name; None if nothing is, or if
    the checkpoint has no digests (saved before them, or cut short)."""
    try:
        digests = json.loads((step_dir / FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        return f"its file digests cannot be read ({error})"
    for name, (size, crc) in sorted(digests.items()):
        path = step_dir / name
        if not path.is_file():
            return f"file '{name}' is missing"
        if path.stat().st_size != size:
            return (
                f"file '{name}' has {path.stat().st_size} bytes, {size} when saved "
                "(truncated or overwritten)"
            )
        if _crc32(path) != crc:
            return f"file '{name}' is corrupted (its CRC-32 does not match)"
    return None
