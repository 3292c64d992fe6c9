"""Where pretraining tiles come from: a manifest of slides, images and folders, grouped into
sources that are balanced against each other, each item read at a physical resolution.

Manifest (CSV, `#` lines are comments): `path` (a slide, a DeepZoom `.dzi`, an image, or a
folder searched recursively), optional `stain`, `mpp` (microns per pixel, overriding or
supplying the file's own) and `source` (a group name; default: the row's path). Relative
paths are taken from the manifest's folder.

- Slides (any format but plain images; plain images larger than `MAX_IMAGE_ITEM_PX`) go through the
  embedding pipeline's own tissue detection and tiling, once per target resolution.
- Images (tiles and regions) are decoded whole; a crop of `input_px * target_mpp / mpp`
  image pixels is taken and resized, for every target resolution the image is large enough
  for; crops that are mostly glass are drawn again. An image without a known resolution is
  cropped at its native pixel size (its physical scale is unknown, and said so).
- A target resolution finer than an item's own is skipped for that item (no upsampling).
- Multi field of view: each sample draws one of `target_mpps` among those its item has.
- Balance: a source is drawn with probability proportional to the square root of its area in
  mm², capped at twice the median source's (so neither the largest source, nor one large
  slide, dominates, and a handful of tiles does not either); then an item of the source
  uniformly.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.slide.opening import find_slides, open_slide
from pathssl.slide.reader import Slide
from pathssl.slide.resolution import resolve_mpp
from pathssl.tiles.grid import TileGrid, TilingSpec, plan_tiles
from pathssl.tiles.loading import resize_tile
from pathssl.tissue.detection import detect_tissue, render_thumbnail

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Plain images (PNG, JPEG, stripped TIFF) up to this size are cropped whole, not tiled.
MAX_IMAGE_ITEM_PX = 4096
# A crop counts as tissue when this fraction of its pixels is stained (saturated, not white).
MIN_CROP_TISSUE = 0.5
# When the resolution of a plain image is unknown, its area is weighted as if at this mpp.
UNKNOWN_MPP_FOR_WEIGHTING = 0.5


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    stain: str = ""
    mpp: float | None = None
    source: str = ""


def read_manifest(path: Path) -> list[ManifestRow]:
    """Rows of the manifest, folders not yet expanded."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as exc:
        raise PathsslError(f"{path}: cannot read manifest ({exc})") from exc
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    if not rows or "path" not in rows[0]:
        raise PathsslError(f"{path}: manifest needs a header with a 'path' column")
    out = []
    for n, row in enumerate(rows, start=2):
        p = Path(row["path"])
        p = p if p.is_absolute() else path.parent / p
        raw_mpp = (row.get("mpp") or "").strip()
        try:
            mpp = float(raw_mpp) if raw_mpp else None
        except ValueError:
            raise PathsslError(f"{path}: row {n}: mpp {raw_mpp!r} is not a number") from None
        if mpp is not None and not 0.05 <= mpp <= 100:
            raise PathsslError(f"{path}: row {n}: mpp {mpp} is no microscope's resolution")
        source = (row.get("source") or "").strip() or str(row["path"])
        out.append(ManifestRow(p, (row.get("stain") or "").strip(), mpp, source))
    return out


@dataclass(frozen=True)
class SlideItem:
    """Tissue sites of one slide, one grid per usable target resolution."""

    path: Path
    slide_size: tuple[int, int]
    grids: tuple[tuple[float, TileGrid], ...]  # (target mpp, grid)
    area_mm2: float


@dataclass(frozen=True)
class ImageItem:
    """A whole image; crop sizes in image pixels per usable target resolution."""

    path: Path
    crops: tuple[tuple[float, int], ...]  # (target mpp, crop side in image px)
    mpp: float | None
    area_mm2: float


Item = SlideItem | ImageItem


def _expand(row: ManifestRow) -> list[Path]:
    if row.path.is_dir():
        return find_slides([row.path])
    if not row.path.exists():
        raise PathsslError(f"{row.path}: listed in the manifest but does not exist")
    return [row.path]


def _slide_item(
    slide: Slide, row: ManifestRow, path: Path, target_mpps: Sequence[float], input_px: int
) -> SlideItem | None:
    res = resolve_mpp(slide, row.mpp)
    tissue = detect_tissue(render_thumbnail(slide, res.mpp))
    grids = []
    for target in target_mpps:
        if target < res.mpp * 0.95:
            continue  # finer than the slide: would be upsampled
        spec = TilingSpec(target, input_px, min_tissue_fraction=0.5)
        try:
            grids.append((target, plan_tiles(slide.levels, res.mpp, tissue, spec, str(path))))
        except PathsslError:
            continue  # no tile at this resolution (too little tissue)
    if not grids:
        return None
    _, grid = grids[0]
    area = len(grid) * (grid.stride_l0_px * res.mpp / 1000) ** 2
    return SlideItem(path, slide.dimensions, tuple(grids), area)


def _image_item(
    size: tuple[int, int],
    mpp: float | None,
    path: Path,
    target_mpps: Sequence[float],
    input_px: int,
) -> ImageItem | None:
    short = min(size)
    if mpp is None:
        crops = [(t, min(short, input_px)) for t in target_mpps[:1]]
    else:
        crops = [
            (t, round(input_px * t / mpp))
            for t in target_mpps
            if t >= mpp * 0.95 and round(input_px * t / mpp) <= short
        ]
    if not crops:
        return None
    area = size[0] * size[1] * ((mpp or UNKNOWN_MPP_FOR_WEIGHTING) / 1000) ** 2
    return ImageItem(path, tuple(crops), mpp, area)


def plan_item(
    row: ManifestRow, path: Path, target_mpps: Sequence[float], input_px: int
) -> Item | None:
    """None where the item has no usable resolution (too small, or too coarse)."""
    with open_slide(path) as slide:
        if slide.backend == "pillow" and max(slide.dimensions) <= MAX_IMAGE_ITEM_PX:
            meta = slide.metadata_mpp
            mpp = row.mpp
            if mpp is None and meta is not None and 0.05 <= meta.mpp_x <= 100:
                mpp = meta.mpp_x
            return _image_item(slide.dimensions, mpp, path, target_mpps, input_px)
        return _slide_item(slide, row, path, target_mpps, input_px)


def tissue_fraction(rgb: np.ndarray) -> float:
    """Share of stained pixels: saturation above 0.1 and not near-white (cheap, per crop)."""
    hi = rgb.max(axis=2).astype(np.float32)
    lo = rgb.min(axis=2).astype(np.float32)
    sat = (hi - lo) / np.maximum(hi, 1.0)
    return float(((sat > 0.1) & (hi < 245)).mean())


class TileSource:
    """Balanced sources of slides and images; `sample` draws one tile from a generator."""

    def __init__(
        self,
        manifest: Path | None,
        image_dirs: Sequence[Path],
        target_mpps: Sequence[float],
        source_px: int,
    ) -> None:
        self.source_px = source_px
        rows = read_manifest(manifest) if manifest is not None else []
        rows += [ManifestRow(Path(d), source=str(d)) for d in image_dirs]
        groups: dict[str, list[Item]] = {}
        self.skipped: list[str] = []
        for row in rows:
            for path in _expand(row):
                item = plan_item(row, path, target_mpps, source_px)
                if item is None:
                    self.skipped.append(f"{path}: too small or too coarse for {target_mpps} µm/px")
                    continue
                groups.setdefault(row.source, []).append(item)
        if not groups:
            raise PathsslError("no training data: give a slide manifest or image folders")
        self.source_names = sorted(groups)
        self.items = [groups[name] for name in self.source_names]
        weights = np.sqrt([sum(i.area_mm2 for i in items) for items in self.items])
        weights = np.minimum(weights, 2 * np.median(weights))
        self.weights = torch.tensor(weights / weights.sum(), dtype=torch.float64)
        self._handles: dict[Path, Slide] = {}
        self._pixels: dict[Path, np.ndarray] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return sum(len(items) for items in self.items)

    def describe(self) -> list[str]:
        """One line per source: items, area, sampling weight."""
        lines = []
        for name, items, w in zip(self.source_names, self.items, self.weights, strict=True):
            slides = sum(isinstance(i, SlideItem) for i in items)
            unknown = sum(isinstance(i, ImageItem) and i.mpp is None for i in items)
            lines.append(
                f"{name}: {slides} slides, {len(items) - slides} images"
                + (f" ({unknown} at native pixels, resolution unknown)" if unknown else "")
                + f", {sum(i.area_mm2 for i in items):.2f} mm², weight {float(w):.3f}"
            )
        return lines + [f"skipped {s}" for s in self.skipped]

    def _own_process(self) -> None:
        if self._pid != os.getpid():  # a forked worker opens its own handles and pixels
            self._handles, self._pixels, self._pid = {}, {}, os.getpid()

    def _slide(self, path: Path) -> Slide:
        self._own_process()
        if path not in self._handles:
            self._handles[path] = open_slide(path)
        return self._handles[path]

    def _image(self, path: Path) -> np.ndarray:
        self._own_process()
        if path not in self._pixels:
            with Image.open(path) as im:
                self._pixels[path] = np.asarray(im.convert("RGB"))
        return self._pixels[path]

    def _pick(self, options: Sequence, g: torch.Generator):
        return options[int(torch.randint(0, len(options), (), generator=g))]

    def _from_slide(self, item: SlideItem, g: torch.Generator) -> np.ndarray:
        _, grid = self._pick(item.grids, g)
        row, col = grid.grid_rc[int(torch.randint(0, len(grid), (), generator=g))]
        # jitter within one grid step so locations are not quantised to the grid
        dx, dy = ((torch.rand(2, generator=g) - 0.5) * grid.stride_l0_px).tolist()
        w, h = item.slide_size
        x = int(np.clip(col * grid.stride_l0_px + dx, 0, w - grid.stride_l0_px))
        y = int(np.clip(row * grid.stride_l0_px + dy, 0, h - grid.stride_l0_px))
        return self._slide(item.path).read_region(
            x, y, grid.level, grid.read_size_px, grid.read_size_px
        )

    def _from_image(self, item: ImageItem, g: torch.Generator, tries: int = 4) -> np.ndarray:
        pixels = self._image(item.path)
        h, w = pixels.shape[:2]
        _, side = self._pick(item.crops, g)
        crop = pixels[:side, :side]
        for _ in range(tries):  # mostly glass: draw again
            y = int(torch.randint(0, h - side + 1, (), generator=g))
            x = int(torch.randint(0, w - side + 1, (), generator=g))
            crop = pixels[y : y + side, x : x + side]
            if tissue_fraction(crop[:: max(1, side // 64), :: max(1, side // 64)]) >= (
                MIN_CROP_TISSUE
            ):
                break
        return np.ascontiguousarray(crop)

    def sample(self, g: torch.Generator) -> torch.Tensor:
        """A random source tile, uint8 (3, source_px, source_px)."""
        source = int(torch.multinomial(self.weights, 1, generator=g))
        item = self._pick(self.items[source], g)
        if isinstance(item, SlideItem):
            rgb = self._from_slide(item, g)
        else:
            rgb = self._from_image(item, g)
        rgb = resize_tile(rgb, self.source_px)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def source_fractions(source: TileSource, n: int, seed: int = 0) -> dict[str, float]:
    """Share of each source among n draws (for the run's log and the model card)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(
        torch.multinomial(source.weights, n, replacement=True, generator=g),
        minlength=len(source.source_names),
    )
    return {name: float(c) / n for name, c in zip(source.source_names, counts, strict=True)}


__all__ = [
    "IMAGE_SUFFIXES",
    "ImageItem",
    "ManifestRow",
    "SlideItem",
    "TileSource",
    "plan_item",
    "read_manifest",
    "source_fractions",
    "tissue_fraction",
]
