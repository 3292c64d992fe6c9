"""Tissue masks: detected on a low-resolution rendering of the slide, or given by the user.

Detection works on brightfield (H&E, IHC: stained tissue is saturated, glass is not; marker
ink is excluded first, see `ink.py`) and on fluorescence (tissue is bright on a dark
background); which one is decided from the image.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pathssl.errors import SlideReadError, TissueError
from pathssl.slide.reader import Slide, SlideLevel
from pathssl.tissue.ink import channel_max_min, ink_mask

TISSUE_MPP = 8.0  # microns per pixel of the rendering the mask is computed on
CHUNK_SIDE_PX = 4096  # level pixels per side of one region read when rendering
RENDER_SLACK = 0.02  # a rendering may be this much coarser than TISSUE_MPP
# The mask's rendering is box-averaged from a level at least this fine, whatever the pyramid:
# a slide's coarse levels differ with the scanner's or converter's resampling, and Otsu on
# faint tissue follows them (the CMU .svs and its Grand-Challenge TIFF gave 55 and 49 tiles
# when each was rendered from its own 8 um/px level; 55 and 55 from 2 um/px).
TISSUE_SOURCE_MPP = 2.0
TISSUE_SOURCE_MAX_PX = 64_000_000  # ... unless that level is larger: then the finest under it
PROGRESS_MIN_CHUNKS = 16  # 16 chunks of 4096² px: a few seconds of decoding and more


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray  # bool, (rows, cols)
    level0_px_per_mask_px: tuple[float, float]  # (x, y) scale from mask to level 0
    mpp: float  # microns per mask pixel
    source: str  # "detected-brightfield", "detected-fluorescence" or "input:<file name>"
    ink_fraction: float = 0.0  # share of the rendering taken as marker ink and excluded

    def fractions(self, xs_l0: np.ndarray, ys_l0: np.ndarray, size_l0: float) -> np.ndarray:
        """Tissue fraction inside each square level-0 box [x, x+size) x [y, y+size)."""
        sx, sy = self.level0_px_per_mask_px
        rows, cols = self.mask.shape
        integral = np.zeros((rows + 1, cols + 1), np.int64)
        integral[1:, 1:] = self.mask.astype(np.int64).cumsum(0).cumsum(1)
        x0 = np.clip(np.round(xs_l0 / sx), 0, cols).astype(np.int64)
        y0 = np.clip(np.round(ys_l0 / sy), 0, rows).astype(np.int64)
        x1 = np.clip(np.maximum(x0 + 1, np.round((xs_l0 + size_l0) / sx)), 0, cols).astype(np.int64)
        y1 = np.clip(np.maximum(y0 + 1, np.round((ys_l0 + size_l0) / sy)), 0, rows).astype(np.int64)
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return inside / area


@dataclass(frozen=True)
class Thumbnail:
    rgb: np.ndarray  # (rows, cols, 3) uint8
    level0_px_per_px: float
    mpp: float


def render_thumbnail(
    slide: Slide,
    mpp: float,
    target_mpp: float = TISSUE_MPP,
    source_mpp: float | None = TISSUE_SOURCE_MPP,
) -> Thumbnail:
    """Render the slide at about `target_mpp` (at most 2 % coarser) by block-averaging chunks read
    from a pyramid level not coarser than it (nor than `source_mpp`, where set and the level
    fits TISSUE_SOURCE_MAX_PX), so no whole level is ever in memory."""
    level = _source_level(slide.levels, mpp, target_mpp, source_mpp)
    lv = slide.levels[level]
    limit = target_mpp * (1 + RENDER_SLACK)
    factor = max(1, math.floor(limit / (lv.downsample * mpp) + 1e-6))
    cols, rows = math.ceil(lv.width / factor), math.ceil(lv.height / factor)
    fast = _reduced_from_jpeg_tiles(slide, level, factor)
    if fast is not None and fast.shape == (rows, cols, 3):
        scale = lv.downsample * factor
        return Thumbnail(fast, scale, mpp * scale)
    out = np.empty((rows, cols, 3), np.uint8)
    # Square chunks of 4096 level pixels (for factors that divide it): a multiple of the usual
    # 256 and 512 px slide tiles, so each slide tile is decoded once, not once per strip.
    step = max(1, CHUNK_SIDE_PX // factor)
    chunks = [(r0, c0) for r0 in range(0, rows, step) for c0 in range(0, cols, step)]
    from tqdm import tqdm

    # a bar where rendering takes a while (large flat slides decode gigapixels here)
    bar = tqdm(
        total=len(chunks),
        desc=f"tissue {slide.path.name[:30]}",
        unit="chunk",
        disable=None if len(chunks) >= PROGRESS_MIN_CHUNKS else True,
        leave=False,
    )

    def render(chunk_origin: tuple[int, int]) -> None:
        r0, c0 = chunk_origin
        r1, c1 = min(rows, r0 + step), min(cols, c0 + step)
        chunk = slide.read_region_image(
            round(c0 * factor * lv.downsample),
            round(r0 * factor * lv.downsample),
            level,
            (c1 - c0) * factor,
            (r1 - r0) * factor,
        )
        # Pillow's box reduction: the rounded block mean, 3x faster than numpy's (measured)
        out[r0:r1, c0:c1] = np.asarray(chunk.reduce(factor))
        bar.update()

    # chunks on every core where the backend reads from many threads (OpenSlide): the
    # thumbnail is on the critical path of every slide (3.3 s of a 13,838-tile slide's 67 s)
    threads = min(4, os.cpu_count() or 1, len(chunks)) if slide.concurrent_reads else 1
    with bar:
        if threads > 1:
            with ThreadPoolExecutor(threads, thread_name_prefix="pathssl-thumbnail") as pool:
                list(pool.map(render, chunks))
        else:
            for chunk_origin in chunks:
                render(chunk_origin)
    scale = lv.downsample * factor
    return Thumbnail(out, scale, mpp * scale)


def _reduced_from_jpeg_tiles(slide: Slide, level: int, factor: int) -> np.ndarray | None:
    """Large reductions of JPEG-tiled levels (flat slides without a pyramid, above all) decode
    each tile at 1/8 scale and skip absent tiles: see slide/jpeg_tiles.reduced_level."""
    from pathssl.slide.jpeg_tiles import DCT_SCALE, jpeg_tile_levels, reduced_level

    if factor < DCT_SCALE or factor % DCT_SCALE:
        return None
    sizes = [(lv.width, lv.height) for lv in slide.levels[: level + 1]]
    levels = jpeg_tile_levels(slide.path, sizes)
    return reduced_level(levels[level], factor) if len(levels) > level else None


def _source_level(
    levels: tuple[SlideLevel, ...], mpp: float, target_mpp: float, source_mpp: float | None
) -> int:
    # 2 % slack: pyramids round their level sizes, so a level meant to be 16x may be 16.06x;
    # without it one pyramid of a slide renders at 8 um/px and another at 4 (other tiles)
    limit = target_mpp * (1 + RENDER_SLACK)
    usable = [i for i, lv in enumerate(levels) if lv.downsample * mpp <= limit]
    if not usable:
        return 0
    if source_mpp is None:
        return max(usable, key=lambda i: levels[i].downsample)
    fits = [i for i in usable if levels[i].width * levels[i].height <= TISSUE_SOURCE_MAX_PX]
    fine = [i for i in fits if levels[i].downsample * mpp <= source_mpp * (1 + RENDER_SLACK)]
    if fine:
        return max(fine, key=lambda i: levels[i].downsample)
    if fits:
        return min(fits, key=lambda i: levels[i].downsample)
    return max(usable, key=lambda i: levels[i].downsample)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between))])


def is_fluorescence(rgb: np.ndarray) -> bool:
    """Dark background: most of a fluorescence slide is black, most of a brightfield one not."""
    grey = rgb.mean(axis=2)
    return float(np.median(grey)) < 0.25 * 255


def detect_tissue(
    thumb: Thumbnail,
    min_region_um2: float = 20_000.0,
    max_hole_um2: float = 50_000.0,
    min_saturation: float = 0.06,
    exclude_ink: bool = True,
) -> TissueMask:
    """Threshold (Otsu with a floor), close small gaps, drop specks, fill small holes."""
    rgb = thumb.rgb.astype(np.float32) / 255.0
    ink = np.zeros(rgb.shape[:2], bool)
    if is_fluorescence(thumb.rgb):
        signal = ndimage.uniform_filter(rgb.max(axis=2), size=3)
        mode = "fluorescence"
        floor = 0.08
    else:
        cmax, cmin = channel_max_min(rgb)
        signal = ndimage.uniform_filter(
            np.where(cmax > 0, (cmax - cmin) / np.maximum(cmax, 1e-6), 0.0), size=3
        )
        mode = "brightfield"
        floor = min_saturation
        if exclude_ink:  # saturated ink would win the Otsu split over tissue
            ink = ink_mask(thumb.rgb)
    clean = signal[~ink]
    threshold = max(otsu_threshold(clean), floor) if clean.size and clean.max() > floor else floor
    mask = (signal > threshold) & ~ink
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=2, border_value=0)
    mask &= ~ink
    px_um2 = thumb.mpp**2
    mask = _remove_small(mask, min_region_um2 / px_um2)
    mask = _fill_small_holes(mask, max_hole_um2 / px_um2) & ~ink  # an ink dot is no hole
    return TissueMask(
        mask, (thumb.level0_px_per_px,) * 2, thumb.mpp, f"detected-{mode}", float(ink.mean())
    )


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    holes = ndimage.binary_fill_holes(mask) & ~mask
    labels, n = ndimage.label(holes)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    fill = sizes <= max_px
    fill[0] = False
    return mask | fill[labels]


def load_tissue_mask(path: Path, slide: Slide, mpp: float) -> TissueMask:
    """A user's mask (any readable image, non-zero = tissue) that covers the whole slide.
    Greyscale and 16-bit masks are read as stored; a mask that marks nothing is refused."""
    from pathssl.slide.opening import open_slide

    with open_slide(path) as mask_image:
        level = len(mask_image.levels) - 1
        lv = mask_image.levels[level]
        if lv.width * lv.height > 100_000_000:
            raise TissueError(f"{path}: tissue mask of {lv.width}x{lv.height} px is too large")
        mask = mask_image.read_nonzero(0, 0, level, lv.width, lv.height)
    w0, h0 = slide.dimensions
    sx, sy = w0 / lv.width, h0 / lv.height
    if abs(sx - sy) > 0.05 * max(sx, sy):
        raise SlideReadError(
            f"{path}: tissue mask is {lv.width}x{lv.height} px, not the shape of the slide "
            f"({w0}x{h0} px); give a mask that covers the whole slide"
        )
    if not mask.any():
        raise TissueError(
            f"{path}: the tissue mask marks no tissue (all its {lv.width}x{lv.height} pixels are "
            "0, and non-zero means tissue); give a mask with the tissue non-zero, or leave the "
            "mask out to detect tissue"
        )
    return TissueMask(mask, (sx, sy), mpp * (sx + sy) / 2, f"input:{path.name}")
