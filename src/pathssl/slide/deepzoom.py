"""DeepZoom (`.dzi`) pyramids read as slides: the XML header plus a folder of JPEG/PNG tiles.

DeepZoom level L of an image of W x H px is ceil(W / 2**(top - L)) wide, top = ceil(log2(max
(W, H))); each level is cut into `TileSize` tiles that overlap their neighbours by `Overlap`
px. Only the levels present on disk are used: the finest present level is level 0 here,
each coarser one twice the downsample. A DZI has no physical resolution (give `mpp`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.reader import MetadataMpp, Slide, SlideLevel


def _tiles_folder(path: Path) -> Path:
    """`<name>_files` beside the .dzi (the standard), or the only such folder below it."""
    beside = path.with_name(f"{path.stem}_files")
    if beside.is_dir():
        return beside
    below = sorted(p for p in path.parent.rglob(f"{path.stem}_files") if p.is_dir())
    if len(below) == 1:
        return below[0]
    raise SlideReadError(
        f"{path}: DeepZoom tiles folder '{path.stem}_files' not found beside it"
        + (f" ({len(below)} found below it; keep one)" if below else "")
    )


class DeepZoomSlide(Slide):
    backend = "deepzoom"

    @staticmethod
    def can_open(path: Path) -> bool:
        if path.suffix.lower() != ".dzi":
            return False
        try:
            return ET.parse(path).getroot().tag.endswith("Image")
        except (ET.ParseError, OSError):
            return False

    @classmethod
    def open(cls, path: Path) -> DeepZoomSlide:
        return cls(path)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        root = ET.parse(path).getroot()
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        size = root.find(f"{ns}Size")
        try:
            self._tile_px = int(root.attrib["TileSize"])
            self._overlap_px = int(root.attrib.get("Overlap", 0))
            self._format = root.attrib.get("Format", "jpeg")
            width, height = int(size.attrib["Width"]), int(size.attrib["Height"])
        except (KeyError, AttributeError, ValueError) as exc:
            raise SlideReadError(f"{path}: not a valid DeepZoom header ({exc})") from exc
        self._folder = _tiles_folder(path)
        top = math.ceil(math.log2(max(width, height)))
        present = sorted(
            (int(p.name) for p in self._folder.iterdir() if p.is_dir() and p.name.isdigit()),
            reverse=True,
        )
        present = [lv for lv in present if lv <= top]
        if not present:
            raise SlideReadError(f"{path}: no tile levels in {self._folder}")
        finest = present[0]
        self._dz_levels = []
        levels = []
        for lv in present:
            shrink = 2 ** (top - lv)
            levels.append(
                SlideLevel(
                    math.ceil(width / shrink), math.ceil(height / shrink), 2.0 ** (finest - lv)
                )
            )
            self._dz_levels.append(lv)
        self._levels = tuple(levels)
        self._tile = lru_cache(maxsize=256)(self._load_tile)

    @property
    def levels(self) -> tuple[SlideLevel, ...]:
        return self._levels

    @property
    def metadata_mpp(self) -> MetadataMpp | None:
        return None  # DeepZoom stores no physical resolution

    def _load_tile(self, dz_level: int, col: int, row: int) -> np.ndarray | None:
        tile_path = self._folder / str(dz_level) / f"{col}_{row}.{self._format}"
        if not tile_path.exists():
            return None  # sparse pyramids leave empty tiles out: background
        with Image.open(tile_path) as im:
            return np.asarray(im.convert("RGB"))

    def _read(self, x_l0: int, y_l0: int, level: int, width: int, height: int) -> np.ndarray:
        lvl = self._levels[level]
        ds = lvl.downsample
        x, y = math.floor(x_l0 / ds), math.floor(y_l0 / ds)
        out = np.full((height, width, 3), 255, np.uint8)
        ts, ov = self._tile_px, self._overlap_px
        x1, y1 = min(x + width, lvl.width), min(y + height, lvl.height)
        for row in range(max(y, 0) // ts, max(y1 - 1, 0) // ts + 1):
            for col in range(max(x, 0) // ts, max(x1 - 1, 0) // ts + 1):
                tile = self._tile(self._dz_levels[level], col, row)
                if tile is None:
                    continue
                # a tile's first pixel lies `overlap` px before its grid cell, except at 0
                ox, oy = col * ts - (ov if col else 0), row * ts - (ov if row else 0)
                cx0, cy0 = max(x, col * ts), max(y, row * ts)
                # edge tiles may be a pixel short of the nominal level size: clip to the tile
                cx1 = min(x1, (col + 1) * ts, ox + tile.shape[1])
                cy1 = min(y1, (row + 1) * ts, oy + tile.shape[0])
                if cx1 <= cx0 or cy1 <= cy0:
                    continue
                out[cy0 - y : cy1 - y, cx0 - x : cx1 - x] = tile[
                    cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox
                ]
        return out
