"""OpenSlide for whole-slide formats (SVS, NDPI, MRXS, generic tiled TIFF, DICOM, ...): regions
read straight into numpy, transparent areas on the slide's background."""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.diagnose import describe_open_failure
from pathssl.slide.reader import (
    MetadataMpp,
    SampleFormat,
    Slide,
    SlideLevel,
)
from pathssl.slide.samples import composite_on_white

if TYPE_CHECKING:
    from pathssl.slide.direct_jpeg import DirectJpegLevels

log = logging.getLogger("pathssl")


def _composite_premultiplied(bgra: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGB from OpenSlide's native premultiplied BGRA bytes, transparent areas on background."""
    rgb = bgra[..., 2::-1]
    alpha = bgra[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    rest = 1.0 - alpha[..., None].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    return np.clip(rgb.astype(np.float32) + bg * rest + 0.5, 0, 255).astype(np.uint8)


def _native_reader():
    """openslide-python's ctypes binding of openslide_read_region, to read straight into a
    numpy buffer: it skips the un-premultiply pass, a PIL image and two copies (a third of
    the reading time, measured). None where the binding or the byte order differs."""
    from openslide import lowlevel

    func = getattr(lowlevel, "_read_region", None)
    return func if func is not None and sys.byteorder == "little" else None


class OpenSlideSlide(Slide):
    backend = "openslide"
    concurrent_reads = True  # OpenSlide is thread-safe; its C calls release the GIL (ctypes)

    @staticmethod
    def can_open(path: Path) -> bool:
        import openslide

        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except Exception:
            return False

    @classmethod
    def open(cls, path: Path) -> OpenSlideSlide:
        return cls(path)

    def __init__(self, path: Path) -> None:
        import openslide

        super().__init__(path)
        try:
            self._osr = openslide.OpenSlide(str(path))
        except Exception as exc:
            raise SlideReadError(describe_open_failure(path, exc)) from exc
        self.vendor = self._osr.properties.get("openslide.vendor", "unknown")
        self._levels = tuple(
            SlideLevel(int(w), int(h), float(d))
            for (w, h), d in zip(
                self._osr.level_dimensions, self._osr.level_downsamples, strict=True
            )
        )
        self._native_read = _native_reader()
        self._direct_levels: DirectJpegLevels | None = None  # built on the first read
        self._direct_lock = threading.Lock()
        if self.vendor == "generic-tiff":  # other vendors' formats are 8-bit RGB by definition
            self.sample_format = _tiff_sample_format(path) or self.sample_format
        bg = self._osr.properties.get("openslide.background-color", "FFFFFF")
        try:
            self._background = tuple(int(bg[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            self._background = (255, 255, 255)

    @property
    def levels(self) -> tuple[SlideLevel, ...]:
        return self._levels

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._osr.properties)

    @property
    def metadata_mpp(self) -> MetadataMpp | None:
        props = self._osr.properties
        x, y = props.get("openslide.mpp-x"), props.get("openslide.mpp-y")
        if x is None or y is None:
            return None
        return MetadataMpp(float(x), float(y), f"openslide.mpp-x/y ({self.vendor})")

    def _read_bgra(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        """(height, width, 4) premultiplied B, G, R, A bytes, as OpenSlide composes them."""
        buf = np.empty((height, width), np.uint32)
        pointer = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
        self._native_read(self._osr._osr, pointer, x_l0, y_l0, level, width, height)
        return buf.view(np.uint8).reshape(height, width, 4)

    def _direct_table(self) -> DirectJpegLevels:
        if self._direct_levels is None:
            with self._direct_lock:
                if self._direct_levels is None:  # imported here: it needs torch (jpeg_tiles)
                    from pathssl.slide.direct_jpeg import DirectJpegLevels

                    self._direct_levels = DirectJpegLevels(
                        self.path, self.vendor, self._levels, self._background, self._openslide
                    )
        return self._direct_levels

    def region_decoder(self, level: int) -> str:
        if self._direct_table().usable(level):
            return "openslide, its JPEG tiles decoded by libjpeg-turbo (checked equal)"
        return "openslide"

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        if (
            width * height
            and (direct := self._direct_table().read(x_l0, y_l0, level, width, height)) is not None
        ):
            return direct
        return self._openslide(x_l0, y_l0, level, width, height)

    def _openslide(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        if self._native_read is None or width * height == 0:
            region = self._osr.read_region((x_l0, y_l0), level, (width, height))
            return composite_on_white(np.asarray(region), self._background)
        bgra = self._read_bgra(x_l0, y_l0, level, width, height)
        return _composite_premultiplied(bgra, self._background)

    def _read_image(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> Image.Image:
        if (
            width * height
            and (direct := self._direct_table().read(x_l0, y_l0, level, width, height)) is not None
        ):
            return Image.fromarray(direct)
        if self._native_read is None or width * height == 0:
            return super()._read_image(x_l0, y_l0, level, width, height)
        bgra = self._read_bgra(x_l0, y_l0, level, width, height)
        if bgra[..., 3].min() == 255:  # opaque: one C pass from BGRA to an RGB image
            return Image.frombuffer("RGB", (width, height), bgra, "raw", "BGRX", 0, 1)
        return Image.fromarray(_composite_premultiplied(bgra, self._background))

    def _format_problem(self) -> str | None:
        if self.sample_format.bits <= 8:
            return None
        return (
            f"{self.sample_format.describe()}, of which OpenSlide keeps only the top 8 bits "
            "(12-bit data would read nearly black): convert it to an 8-bit RGB tiled "
            "pyramidal TIFF, scaling the range its data use to 0-255"
        )

    def _read_nonzero(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> np.ndarray:
        if self.sample_format.bits > 8:  # a 0/1 mask in 16 bits would read as all zero
            raise SlideReadError(f"{self.path}: {self._format_problem()}")
        return super()._read_nonzero(x_l0, y_l0, level, width, height)

    def close(self) -> None:
        self._osr.close()


def _tiff_sample_format(path: Path) -> SampleFormat | None:
    """The first page's samples of a TIFF (None where tifffile cannot tell)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            extra = len(page.extrasamples or ())
            kind = {1: "uint", 2: "int", 3: "float"}.get(int(page.sampleformat), "uint")
            return SampleFormat(
                channels=max(1, page.samplesperpixel - extra),
                bits=int(page.bitspersample),
                alpha=extra > 0,
                kind=kind,
            )
    except Exception:
        return None
