"""All-or-nothing output: files are written under temporary names and renamed at the end.

On any error the temporary files (and folders this stage created) are removed, so a failed
slide leaves nothing partial behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class Stage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._token = uuid.uuid4().hex[:8]
        self._pending: list[tuple[Path, Path]] = []
        self._created_dirs: list[Path] = []
        self._scratch: list[Path] = []

    def path(self, relative: str | Path) -> Path:
        """A temporary path to write `relative` (under root) to; renamed on commit."""
        final = self.root / relative
        self._mkdirs(final.parent)
        # Keep the suffix last: some writers (ITK) choose the format from it.
        tmp = final.with_name(f".{final.stem}.tmp-{self._token}{final.suffix}")
        self._pending.append((tmp, final))
        return tmp

    def scratch(self, name: str) -> Path:
        """A temporary file under root that is removed on commit and on rollback."""
        self._mkdirs(self.root)
        tmp = self.root / f".{name}.scratch-{self._token}"
        self._scratch.append(tmp)
        return tmp

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self._created_dirs.append(d)

    def commit(self) -> None:
        for tmp, _ in self._pending:
            if not tmp.exists():
                raise FileNotFoundError(f"{tmp}: staged output was never written")
        for tmp, final in self._pending:
            if final.is_dir():
                shutil.rmtree(final)
            if tmp.is_file():
                os.chmod(tmp, 0o644)  # some writers create 0600; outputs are for others too
            os.replace(tmp, final)
        self._pending.clear()
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        for tmp in self._scratch:
            tmp.unlink(missing_ok=True)
        self._scratch.clear()

    def rollback(self) -> None:
        for tmp, _ in self._pending:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            # side files some writers create next to it (ITK's .zraw while compressing)
            for side in tmp.parent.glob(f"{tmp.name}*") if tmp.parent.is_dir() else []:
                if side.is_file():
                    side.unlink(missing_ok=True)
        self._remove_scratch()
        for d in reversed(self._created_dirs):
            with suppress(OSError):
                d.rmdir()
        self._pending.clear()


@contextmanager
def staged_outputs(root: Path) -> Iterator[Stage]:
    stage = Stage(root)
    try:
        yield stage
        stage.commit()
    except BaseException:
        stage.rollback()
        raise
