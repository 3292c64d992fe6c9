"""Slide backends: OpenSlide for WSI formats, SimpleITK for .mha, Pillow for plain images,
DeepZoom pyramids (`deepzoom.py`)."""

from __future__ import annotations

import ctypes
import logging
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.deepzoom import DeepZoomSlide
from pathssl.slide.diagnose import describe_open_failure
from pathssl.slide.reader import (
    MetadataMpp,
    SampleFormat,
    Slide,
    SlideLevel,
    bits_in_use,
    scale_to_uint8,
)

log = logging.getLogger("pathssl")

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
        check_metaimage_data(path)  # ITK reads a header whose data file is gone without a word
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
        kind, bits = _sitk_sample_type(self._reader.GetPixelIDValue())
        self.sample_format = SampleFormat(1 if comps == 1 else 3, bits, comps == 4, kind)
        self._dim = dim
        self._levels = (SlideLevel(int(size[0]), int(size[1]), 1.0),)
        spacing_mm = self._reader.GetSpacing()
        self._spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
        self._bits: int | None = None  # in use, of deeper samples: found on the first read

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

    def _samples(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """(y1 - y0, x1 - x0, components) samples as stored, of a box inside the image."""
        import SimpleITK as sitk

        self._reader.SetExtractIndex([x0, y0] + ([0] if self._dim == 3 else []))
        self._reader.SetExtractSize([x1 - x0, y1 - y0] + ([1] if self._dim == 3 else []))
        arr = sitk.GetArrayFromImage(self._reader.Execute())
        return arr.reshape(y1 - y0, x1 - x0, -1)

    def _bits_in_use(self) -> int:
        """One scale for the whole image (never per region): from its largest sample."""
        if self._bits is None:
            w0, h0 = self.dimensions
            rows = max(1, 16_000_000 // max(w0, 1))
            top = 0
            for y in range(0, h0, rows):
                strip = self._samples(0, y, w0, min(h0, y + rows))
                top = max(top, int(strip[..., : self.sample_format.channels].max()))
            self._bits = bits_in_use(top, self.sample_format.bits)
            log.warning(
                "%s: %d-bit samples (largest %d: %d-bit data) scaled to 8-bit for embedding",
                self.path,
                self.sample_format.bits,
                top,
                self._bits,
            )
        return self._bits

    def _box(self, x_l0: int, y_l0: int, width: int, height: int):
        w0, h0 = self.dimensions
        xs, ys = max(x_l0, 0), max(y_l0, 0)
        x1, y1 = min(x_l0 + width, w0), min(y_l0 + height, h0)
        return xs, ys, x1, y1

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), 255, np.uint8)
        xs, ys, x1, y1 = self._box(x_l0, y_l0, width, height)
        if x1 <= xs or y1 <= ys:
            return out
        fmt = self.sample_format
        bits = self._bits_in_use() if fmt.bits > 8 else 8
        out[ys - y_l0 : y1 - y_l0, xs - x_l0 : x1 - x_l0] = samples_to_rgb(
            self._samples(xs, ys, x1, y1), fmt, bits
        )
        return out

    def _read_nonzero(
        self, x_l0: int, y_l0: int, level: int, width: int, height: int
    ) -> np.ndarray:
        out = np.zeros((height, width), bool)
        xs, ys, x1, y1 = self._box(x_l0, y_l0, width, height)
        if x1 > xs and y1 > ys:
            out[ys - y_l0 : y1 - y_l0, xs - x_l0 : x1 - x_l0] = samples_nonzero(
                self._samples(xs, ys, x1, y1), self.sample_format
            )
        return out


def _sitk_sample_type(pixel_id: int) -> tuple[str, int]:
    """("uint" | "int" | "float", bits) of a SimpleITK pixel type, scalar or vector."""
    import SimpleITK as sitk

    for kind, names in (
        ("uint", ("UInt8", "UInt16", "UInt32", "UInt64")),
        ("int", ("Int8", "Int16", "Int32", "Int64")),
        ("float", ("Float32", "Float64")),
    ):
        for name in names:
            ids = (getattr(sitk, f"sitk{name}", None), getattr(sitk, f"sitkVector{name}", None))
            if pixel_id in ids:
                return kind, int(re.sub(r"\D", "", name))
    return "other", 0


def samples_to_rgb(samples: np.ndarray, fmt: SampleFormat, bits: int) -> np.ndarray:
    """(h, w, channels [+ alpha]) samples as stored -> (h, w, 3) RGB uint8: deeper samples
    scaled from `bits`, greyscale repeated, transparent areas on white (the slide background)."""
    colour = scale_to_uint8(samples[..., : fmt.channels], bits)
    if fmt.channels == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if not fmt.alpha:
        return np.ascontiguousarray(colour)
    alpha = samples[..., fmt.channels]
    top = 1 if alpha.dtype == np.bool_ else np.iinfo(alpha.dtype).max
    return _composite_on_white(
        np.dstack([colour, scale_to_uint8(alpha, int(np.log2(top + 1)) or 1)]), (255, 255, 255)
    )


def samples_nonzero(samples: np.ndarray, fmt: SampleFormat) -> np.ndarray:
    """(h, w) bool: any colour sample non-zero and, where there is alpha, not transparent."""
    nonzero = (samples[..., : fmt.channels] != 0).any(axis=-1)
    if fmt.alpha:
        nonzero &= samples[..., fmt.channels] != 0
    return nonzero


_METAIMAGE_TYPE_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}  # fmt: skip


def check_metaimage_data(path: Path) -> None:
    """A MetaImage header (.mhd) names its pixel data file (ElementDataFile): say so in one line
    if that file is missing or shorter than the header says."""
    if path.suffix.lower() not in (".mhd", ".mha"):
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192).decode("latin-1")
    except OSError:
        return  # the reader says why
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*(.*?)\s*$", head.split("ElementDataFile")[0], re.M))
    found = re.search(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", head, re.M)
    if found is None:
        return
    name = found.group(1)
    if name.upper() in ("LOCAL", "LIST") or "%" in name or " " in name:
        return  # data in the header's own file, or a list or pattern of files
    data = (path.parent / name) if not Path(name).is_absolute() else Path(name)
    if not data.is_file():
        raise SlideReadError(
            f"{path}: its pixel data file {data} (ElementDataFile in the header) is missing: "
            f"copy {data.name} beside {path.name}, or give a single-file .mha"
        )
    try:
        count = int(np.prod([int(v) for v in fields["DimSize"].split()]))
        count *= int(fields.get("ElementNumberOfChannels", "1"))
        expected = count * _METAIMAGE_TYPE_BYTES[fields["ElementType"]]
    except (KeyError, ValueError):
        return
    if fields.get("CompressedData", "False").lower() != "true" and data.stat().st_size < expected:
        raise SlideReadError(
            f"{path}: its pixel data file {data} holds {data.stat().st_size} bytes, the header "
            f"says {expected}: truncated; copy {data.name} again"
        )


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
        from PIL import Image

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


BACKENDS = (DeepZoomSlide, OpenSlideSlide, PillowSlide, SimpleITKSlide)
