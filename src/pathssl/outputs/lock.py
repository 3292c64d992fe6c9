"""One process per slide: an advisory lock per output folder, and what a killed run left.

The lock is `flock` on `.<slide>.lock` beside the slide's folder: the kernel releases it
when its process dies, however it dies, so a lock file left by a killed run never blocks a
new one. Holding it, a run knows that temporary files in the folder belong to no live
process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_MARKERS = (".tmp-", ".scratch-")


@contextmanager
def slide_lock(output_dir: Path) -> Iterator[bool]:
    """Yields True with the lock held, or False at once if another process holds it. The
    lock file is removed on release, so a finished run leaves none behind."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = output_dir.parent / f".{output_dir.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        # the holder before us may have removed the file after we opened it: then our lock
        # is on an orphaned inode, and a third process could lock the new file; try again
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield True
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it
        os.close(fd)


def remove_stale_temporaries(output_dir: Path) -> list[Path]:
    """Remove the staged files of an interrupted run (call with the slide's lock held)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    stale = [
        p
        for p in output_dir.rglob(".*")
        if p.is_file() and any(m in p.name for m in TEMPORARY_MARKERS)
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
