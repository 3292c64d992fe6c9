"""Slide backends: OpenSlide for WSI formats, SimpleITK for .mha, Pillow for plain images,
DeepZoom pyramids (`deepzoom.py`)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.deepzoom import DeepZoomSlide
from pathssl.slide.diagnose import describe_open_failure
from pathssl.slide.reader import MetadataMpp, Slide, SlideLevel

# Plain (non-pyramidal) images are decoded whole; beyond this they must be converted.
MAX_PLAIN_IMAGE_PIXELS = 20_000 * 20_000


def _composite_on_white(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """OpenSlide marks unscanned areas transparent; show them as the slide background."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    return (rgb.astype(np.float32) * a + bg * (1.0 - a) + 0.5).astype(np.uint8)


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

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        if self._native_read is None or width * height == 0:
            region = self._osr.read_region((x_l0, y_l0), level, (width, height))
            return _composite_on_white(np.asarray(region), self._background)
        bgra = self._read_bgra(x_l0, y_l0, level, width, height)
        return _composite_premultiplied(bgra, self._background)

    def _read_image(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> Image.Image:
        if self._native_read is None or width * height == 0:
            return super()._read_image(x_l0, y_l0, level, width, height)
        bgra = self._read_bgra(x_l0, y_l0, level, width, height)
        if bgra[..., 3].min() == 255:  # opaque: one C pass from BGRA to an RGB image
            return Image.frombuffer("RGB", (width, height), bgra, "raw", "BGRX", 0, 1)
        return Image.fromarray(_composite_premultiplied(bgra, self._background))

    def close(self) -> None:
        self._osr.close()


class SimpleITKSlide(Slide):
    """MetaImage and other SimpleITK formats; Grand-Challenge stores small 2D images as .mha."""

    backend = "simpleitk"

    @staticmethod
    def can_open(path: Path) -> bool:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return False
        return True

    @classmethod
    def open(cls, path: Path) -> SimpleITKSlide:
        return cls(path)

    def __init__(self, path: Path) -> None:
        import SimpleITK as sitk

        super().__init__(path)
        self._reader = sitk.ImageFileReader()
        self._reader.SetFileName(str(path))
        self._reader.ReadImageInformation()
        size = self._reader.GetSize()
        dim = self._reader.GetDimension()
        if (dim == 3 and size[2] != 1) or dim not in (2, 3):
            raise SlideReadError(f"{path}: a {dim}-D image of size {size}; expected a 2-D slide")
        comps = self._reader.GetNumberOfComponents()
        if comps not in (1, 3, 4):
            raise SlideReadError(f"{path}: {comps} channels per pixel; expected grey, RGB or RGBA")
        self._dim = dim
        self._levels = (SlideLevel(int(size[0]), int(size[1]), 1.0),)
        spacing_mm = self._reader.GetSpacing()
        self._spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))

    @property
    def levels(self) -> tuple[SlideLevel, ...]:
        return self._levels

    @property
    def metadata_mpp(self) -> MetadataMpp | None:
        sx, sy = self._spacing_mm
        # ITK writes spacing 1 when none is known; 1 mm per pixel is no slide's resolution.
        if sx == 1.0 and sy == 1.0:
            return None
        return MetadataMpp(sx * 1000.0, sy * 1000.0, "image spacing (mm)")

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        import SimpleITK as sitk

        w0, h0 = self.dimensions
        out = np.full((height, width, 3), 255, np.uint8)
        x1, y1 = min(x_l0 + width, w0), min(y_l0 + height, h0)
        xs, ys = max(x_l0, 0), max(y_l0, 0)
        if x1 <= xs or y1 <= ys:
            return out
        index = [xs, ys] + ([0] if self._dim == 3 else [])
        size = [x1 - xs, y1 - ys] + ([1] if self._dim == 3 else [])
        self._reader.SetExtractIndex(index)
        self._reader.SetExtractSize(size)
        arr = sitk.GetArrayFromImage(self._reader.Execute())
        arr = arr.reshape(y1 - ys, x1 - xs, -1)
        out[ys - y_l0 : y1 - y_l0, xs - x_l0 : x1 - x_l0] = _to_rgb_uint8(arr)
        return out


def _to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo or 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


class PillowSlide(Slide):
    """Plain PNG, JPEG and stripped TIFF images: decoded whole, so limited in size."""

    backend = "pillow"

    @staticmethod
    def can_open(path: Path) -> bool:
        from PIL import Image

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
        from PIL import Image

        super().__init__(path)
        Image.MAX_IMAGE_PIXELS = MAX_PLAIN_IMAGE_PIXELS
        with Image.open(path) as im:
            self._size = im.size
            self._format = im.format or "image"
            self._mpp = _pillow_mpp(im)
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

    def _load(self) -> np.ndarray:
        if self._pixels is None:
            from PIL import Image

            with Image.open(self.path) as im:
                self._pixels = np.asarray(im.convert("RGB"))
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


BACKENDS = (DeepZoomSlide, OpenSlideSlide, PillowSlide, SimpleITKSlide)
