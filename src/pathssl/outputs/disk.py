"""Output folders that cannot take the outputs: not enough space, read-only, not writable.
Each becomes one line naming the folder and the fix, before work starts where possible."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from pathssl.errors import PathsslError

# errno values that say the output side is at fault, not the slide
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
SAFETY_FACTOR = 1.2  # estimates are close; leave room for metadata and rounding
SAFETY_BYTES = 16 * 2**20


def estimate_output_bytes(tiles: int, dim: int, augmentations: int, grid_cells: int) -> int:
    """Upper estimate of one slide's outputs (and the staged feature files) in bytes."""
    floats = tiles * dim
    staged = 4 * floats * (1 + augmentations)  # plain feature files while embedding
    h5 = 4 * floats * (1 + augmentations) + 16 * tiles
    patch_json = 12 * floats + 64 * tiles  # shortest float32 decimals, about 10 chars each
    feature_map = 4 * dim * grid_cells
    return staged + h5 + patch_json + feature_map + 4 * 2**20  # preview, mask, record


def existing_parent(folder: Path) -> Path:
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_free_space(folder: Path, needed_bytes: int, label: str) -> None:
    free = shutil.disk_usage(existing_parent(folder)).free
    needed = int(needed_bytes * SAFETY_FACTOR) + SAFETY_BYTES
    if free < needed:
        raise PathsslError(
            f"{label}: its outputs need about {_size(needed)} and {existing_parent(folder)} has "
            f"{_size(free)} free; free some space or choose another --output"
        )


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TB"


def check_writable(folder: Path) -> None:
    """Create `folder` (and parents) and write a probe file in it, or one line why not."""
    folder = Path(folder)
    probe = folder / f".pathssl-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise output_error(exc, folder) from exc


def output_error(exc: OSError, folder: Path) -> PathsslError:
    """One line for an OSError met while writing under `folder`."""
    where = exc.filename or folder
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = Path(exc.filename).name if exc.filename else "the outputs"
        return PathsslError(
            f"{folder}: disk full while writing {what} ({os.strerror(exc.errno)}); nothing of "
            "this slide was kept: free some space or choose another --output, then run again"
        )
    if exc.errno == errno.EROFS:
        return PathsslError(
            f"{folder}: the output folder is on a read-only file system; choose a writable --output"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PathsslError(
            f"{folder}: no permission to write {where}; choose a folder you can write to "
            "(--output) or fix its permissions"
        )
    return PathsslError(f"{folder}: cannot write {where} ({exc.strerror or exc})")


def is_output_error(exc: BaseException, folder: Path) -> bool:
    """An OSError of the output side: a full disk anywhere, or a permission/read-only error
    on a path under `folder`."""
    if not isinstance(exc, OSError) or exc.errno not in OUTPUT_ERRNOS:
        return False
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    name = exc.filename
    return name is None or Path(name).absolute().is_relative_to(Path(folder).absolute())
