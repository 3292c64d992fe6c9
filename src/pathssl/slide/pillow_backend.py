"""Pillow for plain PNG, JPEG and stripped TIFF images, decoded whole (so limited in size):
RGBA over white, deeper samples read at their depth, resolution from tags or density."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.reader import (
    MetadataMpp,
    SampleFormat,
    Slide,
    SlideLevel,
    bits_in_use,
)
from pathssl.slide.samples import samples_nonzero, samples_to_rgb

log = logging.getLogger("pathssl")


# Plain (non-pyramidal) images are decoded whole; beyond this they must be converted.
MAX_PLAIN_IMAGE_PIXELS = 20_000 * 20_000


class PillowSlide(Slide):
    """Plain PNG, JPEG and stripped TIFF images: decoded whole, so limited in size."""

    backend = "pillow"

    @staticmethod
    def can_open(path: Path) -> bool:

        try:
            with Image.open(path) as im:
                im.verify()
        except Exception:
            return False
        return True

    @classmethod
    def open(cls, path: Path) -> PillowSlide:
        return cls(path)

    def __init__(self, path: Path) -> None:

        super().__init__(path)
        Image.MAX_IMAGE_PIXELS = MAX_PLAIN_IMAGE_PIXELS
        with Image.open(path) as im:
            self._size = im.size
            self._format = im.format or "image"
            self._mpp = _pillow_mpp(im)
            self.sample_format = _pillow_sample_format(im)
        if self._size[0] * self._size[1] > MAX_PLAIN_IMAGE_PIXELS:
            raise SlideReadError(
                f"{path}: a plain {self._format} of {self._size[0]}x{self._size[1]} px is too "
                "large to decode whole; convert it to a tiled pyramidal TIFF"
            )
        self._pixels: np.ndarray | None = None

    @property
    def levels(self) -> tuple[SlideLevel, ...]:
        return (SlideLevel(self._size[0], self._size[1], 1.0),)

    @property
    def metadata_mpp(self) -> MetadataMpp | None:
        return self._mpp

    def _samples(self) -> np.ndarray:
        """(h, w, channels [+ alpha]) samples as stored (16-bit colour too, which Pillow would
        cut to its top 8 bits)."""

        fmt = self.sample_format
        with Image.open(self.path) as im:
            if fmt.bits > 8 and fmt.channels == 3:
                samples = _deep_colour_samples(self.path, im.format)
            elif im.mode in _NATIVE_MODES:
                samples = np.asarray(im)
            else:  # palette, premultiplied, CMYK, YCbCr, ...: as grey or RGB, with alpha
                mode = ("L" if fmt.channels == 1 else "RGB") + ("A" if fmt.alpha else "")
                samples = np.asarray(im.convert(mode))
        return samples if samples.ndim == 3 else samples[..., None]

    def _load(self) -> np.ndarray:
        if self._pixels is None:
            samples, fmt = self._samples(), self.sample_format
            bits = 8
            if samples.dtype not in (np.uint8, np.bool_):
                top = int(samples[..., : fmt.channels].max())
                bits = bits_in_use(top, samples.dtype.itemsize * 8)
                log.warning(
                    "%s: %d-bit samples (largest %d: %d-bit data) scaled to 8-bit for embedding",
                    self.path,
                    samples.dtype.itemsize * 8,
                    top,
                    bits,
                )
            self._pixels = samples_to_rgb(samples, fmt, bits)
        return self._pixels

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        pixels = self._load()
        out = np.full((height, width, 3), 255, np.uint8)
        h0, w0 = pixels.shape[:2]
        xs, ys = max(x_l0, 0), max(y_l0, 0)
        x1, y1 = min(x_l0 + width, w0), min(y_l0 + height, h0)
        if x1 > xs and y1 > ys:
            out[ys - y_l0 : y1 - y_l0, xs - x_l0 : x1 - x_l0] = pixels[ys:y1, xs:x1]
        return out

    def _read_nonzero(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> np.ndarray:
        nonzero = samples_nonzero(self._samples(), self.sample_format)
        out = np.zeros((height, width), bool)
        h0, w0 = nonzero.shape
        xs, ys = max(x_l0, 0), max(y_l0, 0)
        x1, y1 = min(x_l0 + width, w0), min(y_l0 + height, h0)
        if x1 > xs and y1 > ys:
            out[ys - y_l0 : y1 - y_l0, xs - x_l0 : x1 - x_l0] = nonzero[ys:y1, xs:x1]
        return out


# Pillow modes whose arrays are the samples as stored: grey, grey + alpha, deeper grey, RGB(A)
_NATIVE_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "RGB", "RGBA"}
_PILLOW_FORMATS = {  # mode -> channels, bits, alpha, kind
    "1": (1, 1, False, "uint"),
    "L": (1, 8, False, "uint"),
    "LA": (1, 8, True, "uint"),
    "La": (1, 8, True, "uint"),
    "I": (1, 32, False, "int"),
    "F": (1, 32, False, "float"),
    "I;16": (1, 16, False, "uint"),
    "I;16B": (1, 16, False, "uint"),
    "I;16L": (1, 16, False, "uint"),
    "I;16N": (1, 16, False, "uint"),
    "RGBA": (3, 8, True, "uint"),
    "RGBa": (3, 8, True, "uint"),
    "PA": (3, 8, True, "uint"),
}


def _pillow_sample_format(im) -> SampleFormat:
    channels, bits, alpha, kind = _PILLOW_FORMATS.get(im.mode, (3, 8, False, "uint"))
    if im.mode == "P" and "transparency" in im.info:
        alpha = True
    if channels == 3:  # Pillow opens 16-bit colour as 8-bit RGB(A): the file says how deep
        tags = getattr(im, "tag_v2", None)
        depth = tags.get(258) if tags is not None else None
        if isinstance(depth, tuple | list) and depth:
            bits = max(bits, *(int(b) for b in depth))
        elif isinstance(depth, int):
            bits = max(bits, depth)
        elif any(";16" in str(tile[3]) for tile in getattr(im, "tile", None) or ()):
            bits = 16
    return SampleFormat(channels, bits, alpha, kind)


def _deep_colour_samples(path: Path, image_format: str | None) -> np.ndarray:
    """16-bit colour samples, which Pillow cuts to 8 bits: tifffile for TIFF, else SimpleITK."""
    if image_format == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            samples = page.asarray()
            if page.planarconfig == 2 and samples.ndim == 3:  # separate planes: channels first
                samples = np.moveaxis(samples, 0, -1)
        return samples
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


_TIFF_UNIT_UM = {2: 25_400.0, 3: 10_000.0}  # ResolutionUnit: inch, centimetre


def _pillow_mpp(im) -> MetadataMpp | None:
    """Resolution from TIFF tags (only when present) or a PNG/JPEG density with a unit."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None:
        unit = tags.get(296, 2)
        xres, yres = tags.get(282), tags.get(283)
        if xres is None or yres is None or unit not in _TIFF_UNIT_UM:
            return None
        per_um = _TIFF_UNIT_UM[unit]
        return MetadataMpp(per_um / float(xres), per_um / float(yres), "TIFF resolution tags")
    dpi = im.info.get("dpi")
    if dpi and im.info.get("jfif_unit", 1) != 0 and dpi[0] and dpi[1]:
        return MetadataMpp(25_400.0 / float(dpi[0]), 25_400.0 / float(dpi[1]), "image dpi")
    return None
