"""Why no backend could open a file, said precisely: truncated, damaged, or another format.

A truncated slide and an unsupported one need different fixes (copy it again, or convert
it), so the file's own structure is checked before the error is worded.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pathssl.errors import SlideReadError

CONVERT_HINT = (
    "convert it to a tiled pyramidal TIFF (e.g. `vips tiffsave IN OUT.tif --tile --pyramid "
    "--compression jpeg`)"
)
MAX_DIRECTORIES = 1000
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both orders


def _tiff_directory_past_end(head: bytes, fh, size: int) -> int | None:
    """Offset of the first TIFF directory (IFD) that lies past the end of the file, or None."""
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    count_fmt, entry_size, next_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size = struct.calcsize(count_fmt)
    next_size = struct.calcsize(next_fmt)
    for _ in range(MAX_DIRECTORIES):
        if offset == 0:
            return None
        if offset + count_size > size:
            return offset
        fh.seek(offset)
        count = struct.unpack(order + count_fmt, fh.read(count_size))[0]
        end = offset + count_size + count * entry_size + next_size
        if end > size:
            return offset
        fh.seek(end - next_size)
        offset = struct.unpack(order + next_fmt, fh.read(next_size))[0]
    return None


def _truncated_tiff(path: Path, head: bytes) -> str | None:
    """The one-line 'truncated' message for a TIFF whose directory chain runs past the end."""
    if head[:4] not in TIFF_MAGIC or len(head) < 16:
        return None
    size = path.stat().st_size
    with open(path, "rb") as fh:
        past = _tiff_directory_past_end(head, fh, size)
    if past is None:
        return None
    return (
        f"{path}: truncated: a TIFF-based slide whose image directory at byte {past} lies "
        f"past the end of the file ({size} bytes); copy or download the slide again"
    )


def permission_denied(path: Path) -> str:
    """The one line for a file this process may not read."""
    return (
        f"{path}: cannot be read (permission denied for this user); give the account that runs "
        "pathssl read access (e.g. `chmod a+r` on the file, and `a+x` on its folders), or copy "
        "the slide somewhere it can read"
    )


def unreadable_file(path: Path) -> str | None:
    """Why `path` cannot be opened for reading at all (permissions, I/O), or None."""
    if not os.access(path, os.R_OK):
        return permission_denied(path)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        return permission_denied(path)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc}); check the disk or copy it again"
    return None


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)
    except OSError as exc:
        raise SlideReadError(unreadable_file(path) or f"{path}: cannot be read ({exc})") from exc


def describe_unreadable(path: Path) -> str:
    """One line for a file that no backend opened, naming what is wrong and the fix."""
    reason = unreadable_file(path)
    if reason:
        return reason
    head = _head(path)
    if head[:4] in TIFF_MAGIC and len(head) >= 16:
        return _truncated_tiff(path, head) or (
            f"{path}: a TIFF-based file that OpenSlide and Pillow cannot open: damaged, "
            "or a layout or compression they do not support; check the copy (size, "
            f"checksum) or {CONVERT_HINT}"
        )
    if head[128:132] == b"DICM":
        return (
            f"{path}: a DICOM file that is not a readable whole-slide image: OpenSlide "
            "needs the slide's whole series (VL Whole Slide Microscopy) in one folder; "
            "check that every file of the series was copied"
        )
    return f"{path}: not a format OpenSlide, SimpleITK or Pillow can read; {CONVERT_HINT}"


# OpenSlide's words for DICOM files it recognises but will not open, and what they mean
DICOM_REASONS = {
    "image flavor": "its ImageType attribute (0008,0008) is missing or names no whole-slide "
    "flavour (VOLUME, LABEL, OVERVIEW, THUMBNAIL), so OpenSlide cannot tell what it holds; it "
    "is not truncated: re-export it with a WSI-conformant DICOM writer",
    "not a whole slide": "it is DICOM but not a VL Whole Slide Microscopy image",
}


def describe_open_failure(path: Path, exc: Exception) -> str:
    """One line for a file whose format OpenSlide recognised but could not open."""
    text = str(exc)
    reason = unreadable_file(path)
    if reason:
        return reason
    head = _head(path)
    if head[128:132] == b"DICM":
        for words, reason in DICOM_REASONS.items():
            if words in text.lower():
                return f"{path}: OpenSlide cannot use this DICOM file: {reason} ({text})"
        return (
            f"{path}: OpenSlide cannot open this DICOM file ({text}); check that it is a "
            "VL Whole Slide Microscopy image and that its whole series is in one folder"
        )
    truncated = _truncated_tiff(path, head)
    if truncated:
        return truncated
    return (
        f"{path}: OpenSlide cannot open it ({text}); the file may be damaged: check the copy "
        "(size, checksum), re-export or re-download it"
    )
