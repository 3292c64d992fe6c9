"""A job stopped by SIGTERM (the platform's time limit, `docker stop`): one line on stderr that
names the slide and how far it got, and nothing left in /output.

Python's default SIGTERM ends the process at once: no `finally`, so the staged outputs' scratch
files stay where they are. Here SIGTERM raises `Terminated` in the main process instead, so the
stage rolls back and the job's work folder goes, then process.py prints the line and exits 143
(128 + SIGTERM). How far it got is read from what the library leaves observable: the tile count
it logs once the slide is planned, and the size of the feature scratch file it fills row by row.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

EXIT_CODE = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main process so every cleanup runs."""


@dataclass
class Progress:
    """What a job is doing, for the line printed when it is stopped."""

    slide: str = ""
    work_dir: Path | None = None
    embedding_dim: int = 0
    tiles: int | None = None  # planned tiles, once the library has logged them
    stage: str = "starting"
    started: float = field(default_factory=time.perf_counter)
    stopped: str = ""  # describe() as it was when SIGTERM arrived, before any cleanup

    def tiles_done(self) -> int | None:
        if not self.work_dir or not self.embedding_dim or not self.work_dir.is_dir():
            return None
        sizes = [p.stat().st_size for p in self.work_dir.glob(".features.scratch-*")]
        return max(sizes) // (4 * self.embedding_dim) if sizes else None

    def describe(self) -> str:
        if self.stopped:
            return self.stopped
        where = self.stage
        if self.stage == "embedding":
            done = self.tiles_done()
            if self.tiles is None:
                where = "reading the slide and finding tissue (no tiles planned yet)"
            elif done is None:
                where = f"{self.tiles} tiles planned, none embedded yet"
            else:
                where = f"{min(done, self.tiles)} of {self.tiles} tiles embedded"
        slide = f" on {self.slide}" if self.slide else ""
        return (
            f"stopped by SIGTERM (time limit?) after {time.perf_counter() - self.started:.0f} s"
            f"{slide}: {where}; no output written"
        )


class _TileCount(logging.Filter):
    """Catches the library's '<title>: N tiles of ...' line to learn the planned tile count."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg.startswith("%s: %d tiles of") and isinstance(record.args, tuple):
            self.progress.tiles = int(record.args[1])
        return True


@contextmanager
def stop_on_sigterm(progress: Progress) -> Iterator[Progress]:
    """Within the block, SIGTERM raises Terminated in this process (children just exit)."""
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked reading worker: no cleanup of its own
            os._exit(EXIT_CODE)
        progress.stopped = progress.describe()  # before the cleanup removes what it reads
        raise Terminated(signum)

    counter = _TileCount(progress)
    logger = logging.getLogger("pathssl")
    logger.addFilter(counter)
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield progress
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.removeFilter(counter)
