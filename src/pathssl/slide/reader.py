"""The `Slide` interface that every backend implements (backends.py, deepzoom.py); opening.py
picks the backend by file content.

Regions are always read at a pyramid level, never a whole level at once, and come back as
RGB uint8 arrays of shape (height, width, 3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError


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
