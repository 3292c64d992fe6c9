"""Finding slide files and opening each with the backend that recognises its content."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pathssl.errors import SlideReadError
from pathssl.slide.backends import BACKENDS
from pathssl.slide.diagnose import describe_unreadable
from pathssl.slide.multiplex import refuse_multiplex
from pathssl.slide.reader import Slide

# Extensions looked for when a folder is given; single files are opened by content whatever
# their name (Grand-Challenge renames inputs to <uuid>.<ext>).
SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
    ".dzi",
    ".mha",
    ".mhd",
    ".png",
    ".jpg",
    ".jpeg",
)


def open_slide(path: str | Path) -> Slide:
    """Open `path` with the first backend that recognises its content (not its suffix)."""
    path = Path(path)
    if not path.exists():
        raise SlideReadError(f"{path}: no such file")
    if path.is_dir():
        raise SlideReadError(f"{path}: is a directory, not a slide (give a file)")
    if path.stat().st_size == 0:
        raise SlideReadError(f"{path}: file is empty (0 bytes); copy the slide again")
    refuse_multiplex(path)  # before OpenSlide or Pillow would read its first channel alone
    for backend in BACKENDS:
        if backend.can_open(path):
            return backend.open(path)
    raise SlideReadError(describe_unreadable(path))


def find_slides(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of slide files.

    A folder is searched recursively by suffix; the files of a DICOM slide share a folder,
    so only the first .dcm of each folder is kept (OpenSlide finds the others).
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise SlideReadError(f"{path}: no such file or folder")
        in_folder = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES and not p.name.startswith(".")
        )
        seen_dicom_dirs: set[Path] = set()
        kept: list[Path] = []
        for p in in_folder:
            if p.suffix.lower() == ".dcm":
                if p.parent in seen_dicom_dirs:
                    continue
                seen_dicom_dirs.add(p.parent)
            kept.append(p)
        if not kept:
            raise SlideReadError(
                f"{path}: no slides found (looked for {', '.join(SLIDE_SUFFIXES)}); "
                "point to a folder that holds slides"
            )
        found.extend(kept)
    return list(dict.fromkeys(found))


def slide_name(path: Path, used: Sequence[str] = ()) -> str:
    """A folder name for a slide's outputs: the file stem, made unique against `used`."""
    stem = path.stem or "slide"
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    return name
