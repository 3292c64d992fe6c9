"""One `Slide` interface over OpenSlide, SimpleITK and Pillow, chosen by file content.

Regions are always read at a pyramid level, never a whole level at once, and come back as
RGB uint8 arrays of shape (height, width, 3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError

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


@dataclass(frozen=True)
class SlideLevel:
    width: int
    height: int
    downsample: float  # level-0 pixels per pixel of this level


@dataclass(frozen=True)
class MetadataMpp:
    mpp_x: float
    mpp_y: float
    source: str  # which metadata field it came from


class Slide(ABC):
    """A readable slide. Use as a context manager; each process opens its own."""

    backend: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    @abstractmethod
    def levels(self) -> tuple[SlideLevel, ...]: ...

    @property
    @abstractmethod
    def metadata_mpp(self) -> MetadataMpp | None: ...

    @property
    def dimensions(self) -> tuple[int, int]:
        level0 = self.levels[0]
        return level0.width, level0.height

    @property
    def properties(self) -> dict[str, str]:
        return {}

    def read_region(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        """Read a (height, width, 3) RGB region at `level` whose top-left is level-0 (x, y)."""
        region = self._checked(self._read, x_l0, y_l0, level, width, height)
        if region.shape != (height, width, 3) or region.dtype != np.uint8:
            raise SlideReadError(f"{self.path}: reader returned {region.shape} {region.dtype}")
        return region

    def read_region_image(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> Image.Image:
        """The same region as an RGB PIL image, for resizing without an extra copy."""
        image = self._checked(self._read_image, x_l0, y_l0, level, width, height)
        if image.mode != "RGB" or image.size != (width, height):
            raise SlideReadError(f"{self.path}: reader returned {image.mode} {image.size}")
        return image

    def _checked(self, read, x_l0: int, y_l0: int, level: int, width: int, height: int):
        if not 0 <= level < len(self.levels):
            raise SlideReadError(f"{self.path}: level {level} does not exist")
        try:
            return read(int(x_l0), int(y_l0), level, int(width), int(height))
        except SlideReadError:
            raise
        except Exception as exc:  # decoder errors from C libraries come in many types
            raise SlideReadError(
                f"{self.path}: cannot read region x={x_l0} y={y_l0} level={level} "
                f"size={width}x{height} ({type(exc).__name__}: {exc}); the file may be "
                "truncated or corrupt: re-export or re-download it"
            ) from exc

    @abstractmethod
    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray: ...

    def _read_image(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> Image.Image:
        return Image.fromarray(self._read(x_l0, y_l0, level, width, height))

    def close(self) -> None:  # noqa: B027 - optional for backends without handles
        pass

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_slide(path: str | Path) -> Slide:
    """Open `path` with the first backend that recognises its content (not its suffix)."""
    from pathssl.slide.backends import BACKENDS
    from pathssl.slide.multiplex import refuse_multiplex

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
    from pathssl.slide.diagnose import describe_unreadable

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
