"""The `Slide` interface that every backend implements (backends.py, deepzoom.py); opening.py
picks the backend by file content.

Regions are always read at a pyramid level, never a whole level at once, and come back as
RGB uint8 arrays of shape (height, width, 3). Images whose samples are not 8-bit colour say
so before the first region is read: greyscale on a light background (a brightfield scan
without colour) and samples no reader scales faithfully are refused with what to do; deeper
samples a backend reads whole are scaled to 8 bits with a warning (see `SampleFormat`).
"""

from __future__ import annotations

import logging
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


log = logging.getLogger("pathssl")

# A greyscale image whose background (its median) is darker than this is one fluorescence
# channel, read as grey RGB; lighter, it is brightfield without colour (tissue detection's
# fluorescence rule, tissue/detection.py is_fluorescence, on the same 0-255 scale).
DARK_BACKGROUND = 0.25 * 255
GREY_SAMPLE_PX = 2048 * 2048  # pixels looked at to judge a greyscale image's background
COLOUR_FIX = "export or scan the slide as 8-bit RGB colour"


@dataclass(frozen=True)
class SampleFormat:
    """How a file stores its pixels (before the reader makes RGB uint8 of them)."""

    channels: int = 3  # colour channels, alpha aside (1: greyscale)
    bits: int = 8  # bits per sample
    alpha: bool = False
    kind: str = "uint"  # "uint", "int" (signed) or "float"

    def describe(self) -> str:
        colour = "greyscale, 1 channel" if self.channels == 1 else f"{self.channels} channels"
        kind = {"int": "signed integer ", "float": "floating-point "}.get(self.kind, "")
        return f"{colour}{' + alpha' if self.alpha else ''}, {self.bits}-bit {kind}samples"


def bits_in_use(max_value: int, container_bits: int) -> int:
    """The bit depth of the data in a deeper container: 12-bit cameras store 0-4095 in 16-bit
    samples; scaling by 65535 would read them nearly black."""
    for bits in (10, 12, 14):
        if bits < container_bits and max_value < 2**bits:
            return bits
    return container_bits


def scale_to_uint8(samples: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned samples of `bits` bits to 0-255 (rounded)."""
    if samples.dtype == np.uint8:
        return samples
    if samples.dtype == np.bool_:
        return samples.astype(np.uint8) * 255
    top = float(2**bits - 1)
    scaled = samples.astype(np.float32) * np.float32(255.0 / top) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


class Slide(ABC):
    """A readable slide. Use as a context manager; each process opens its own."""

    backend: str = ""
    concurrent_reads: bool = False  # True where one handle may read regions from many threads
    sample_format: SampleFormat = SampleFormat()  # a backend sets its file's own
    _pixel_problem: str | bool | None = False  # False: not judged yet

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

    def pixel_problem(self) -> str | None:
        """Why this image cannot be read as an RGB slide, in a phrase that says what it is and
        what to do, or None. Checked (once) before the first region is read."""
        if self._pixel_problem is False:
            self._pixel_problem = self._judge_pixels()
        return self._pixel_problem or None

    def _judge_pixels(self) -> str | None:
        fmt = self.sample_format
        if fmt.kind != "uint" or fmt.bits > 16:
            return (
                f"{fmt.describe()}: not a scanner's colour image (microscopy data or a "
                f"computed map?); pathssl embeds RGB slides: {COLOUR_FIX}"
            )
        if fmt.channels not in (1, 3):
            return (
                f"{fmt.describe()}: pathssl embeds RGB slides and will not pick channels; "
                "export an RGB rendering of the channels you want"
            )
        problem = self._format_problem()
        if problem or fmt.channels == 3:
            return problem
        background = self._median_grey()
        if background >= DARK_BACKGROUND:
            return (
                f"{fmt.describe()}, on a light background (median {background:.0f} of 255): a "
                "brightfield scan without colour, in which tissue detection (by stain colour) "
                "finds nothing and colour-trained encoders see no stain; "
                f"{COLOUR_FIX} (a fluorescence channel on a dark background is read as grey)"
            )
        log.warning(
            "%s: %s on a dark background (median %.0f of 255): read as one fluorescence "
            "channel, in grey",
            self.path,
            fmt.describe(),
            background,
        )
        return None

    def _format_problem(self) -> str | None:
        """A backend's own refusal of its file's sample format (None: readable)."""
        return None

    def _median_grey(self) -> float:
        """Median brightness of the coarsest level (evenly spaced windows of a large one)."""
        level = len(self.levels) - 1
        lv = self.levels[level]
        ds = lv.downsample
        if lv.width * lv.height <= GREY_SAMPLE_PX:
            pixels = self._read(0, 0, level, lv.width, lv.height)[..., 0]
        else:
            side = 512
            xs = np.linspace(0, max(0, lv.width - side), 4).round().astype(int)
            ys = np.linspace(0, max(0, lv.height - side), 4).round().astype(int)
            pixels = np.concatenate(
                [
                    self._read(round(x * ds), round(y * ds), level, side, side)[..., 0].ravel()
                    for y in ys
                    for x in xs
                ]
            )
        return float(np.median(pixels))

    def _check_pixels(self) -> None:
        try:
            problem = self.pixel_problem()
        except SlideReadError:
            raise
        except Exception as exc:  # the look at the pixels is a read like any other
            raise SlideReadError(
                f"{self.path}: cannot read its pixels ({type(exc).__name__}: {exc}); the file "
                "may be truncated or corrupt: re-export or re-download it"
            ) from exc
        if problem:
            raise SlideReadError(f"{self.path}: {problem}")

    def region_decoder(self, level: int) -> str:
        """Who decodes the regions of `level`: for the run record."""
        return self.backend

    def read_region(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        """Read a (height, width, 3) RGB region at `level` whose top-left is level-0 (x, y)."""
        self._check_pixels()
        region = self._checked(self._read, (x_l0, y_l0, level, width, height))
        if region.shape != (height, width, 3) or region.dtype != np.uint8:
            raise SlideReadError(f"{self.path}: reader returned {region.shape} {region.dtype}")
        return region

    def read_region_image(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> Image.Image:
        """The same region as an RGB PIL image, for resizing without an extra copy."""
        self._check_pixels()
        image = self._checked(self._read_image, (x_l0, y_l0, level, width, height))
        if image.mode != "RGB" or image.size != (width, height):
            raise SlideReadError(f"{self.path}: reader returned {image.mode} {image.size}")
        return image

    def read_nonzero(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        """(height, width) bool: where any colour sample is non-zero (transparent pixels are
        zero). For masks: greyscale and 16-bit images are read as stored, never refused."""
        mask = self._checked(self._read_nonzero, (x_l0, y_l0, level, width, height))
        if mask.shape != (height, width):
            raise SlideReadError(f"{self.path}: reader returned a mask of {mask.shape}")
        return mask

    def _read_nonzero(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> np.ndarray:
        return self._read(x_l0, y_l0, level, width, height).max(axis=2) > 0

    def _checked(self, read, region: tuple[int, int, int, int, int]):
        """read(x_l0, y_l0, level, width, height), its failures worded as one line."""
        x_l0, y_l0, level, width, height = region
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
