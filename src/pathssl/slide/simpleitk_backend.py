"""SimpleITK for MetaImage (.mha, .mhd) and other ITK formats, decoded whole, any sample depth;
a .mhd whose data file is missing or short is named."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

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
