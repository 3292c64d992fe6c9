"""preview.png, for a person checking a run at a glance: a title (slide, model, tiles, µm/px,
tissue source, tile QC), the slide about 1,000 px on its long side with the tissue outline
(green), the tiles flagged by tile QC (magenta) and a scale bar, beside a PCA-to-RGB rendering
of the tile features on the tile grid, and a legend. Fluorescence is contrast-stretched per
channel so that a dark slide shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pathssl.outputs.tile_summary import leading_components
from pathssl.tiles.grid import TileGrid
from pathssl.tissue.detection import Thumbnail, TissueMask

PREVIEW_LONG_SIDE_PX = 1000
MAX_PCA_FIT_TILES = 10_000
CHUNK_TILES = 16_384
OUTLINE_RGB = (0, 200, 0)
FLAGGED_RGB = (230, 0, 230)  # tiles flagged by tile QC
TEXT_RGB = (20, 20, 20)
GAP_PX = 16
MARGIN_PX = 12
SCALE_BAR_UM = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


@dataclass(frozen=True)
class PreviewCaption:
    title: str  # first line: the slide
    details: list[str]  # further lines: model, tiles, tissue, QC


def preview_mpp(level0_mpp: float, level0_size_px: tuple[int, int]) -> float:
    """The resolution at which the slide's long side is about PREVIEW_LONG_SIDE_PX."""
    return max(level0_mpp, max(level0_size_px) * level0_mpp / PREVIEW_LONG_SIDE_PX)


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """(N, 3) uint8: the first three principal components, each scaled to its 1-99% range."""
    n = features.shape[0]
    fit_idx = np.unique(np.linspace(0, n - 1, min(n, MAX_PCA_FIT_TILES)).astype(int))
    sample = features[fit_idx].astype(np.float64)
    mean = sample.mean(axis=0)
    axes = leading_components(sample - mean, 3)
    comps = np.zeros((3, sample.shape[1]))
    comps[: len(axes)] = axes
    proj = np.concatenate(
        [(features[s : s + CHUNK_TILES] - mean) @ comps.T for s in range(0, n, CHUNK_TILES)]
    )
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    scaled = (proj - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def stretch(rgb: np.ndarray, min_range: float = 32.0) -> np.ndarray:
    """Fluorescence made legible: each channel stretched from its 1st to its 99.5th percentile;
    a channel spanning less than `min_range` carries no signal and stays dark (no noise
    amplified); a slide with one channel of signal (e.g. DAPI in blue) is shown in grey,
    which reads far better than dark blue on black."""
    out = np.zeros_like(rgb)
    signal = []
    for c in range(rgb.shape[2]):
        lo, hi = np.percentile(rgb[..., c], [1, 99.5])
        if hi - lo >= min_range:
            out[..., c] = np.clip((rgb[..., c] - lo) * 255.0 / (hi - lo), 0, 255)
            signal.append(c)
        else:
            out[..., c] = rgb[..., c]
    if len(signal) == 1:
        return np.repeat(out[..., signal[0] : signal[0] + 1], 3, axis=2)
    return out


def write_preview(
    path: Path,
    image: Thumbnail,
    tissue: TissueMask,
    grid: TileGrid,
    features: np.ndarray,
    *,
    flagged: np.ndarray | None,
    caption: PreviewCaption,
    fluorescence: bool = False,
) -> None:
    """`image`: the slide at preview resolution; `flagged` (N,) bool: tiles flagged by QC."""
    slide = _fit(image.rgb)
    scale = image.level0_px_per_px * image.rgb.shape[1] / slide.shape[1]  # level-0 px per px
    rows, cols = slide.shape[:2]
    left = stretch(slide) if fluorescence else slide.copy()
    mask = _resample_nearest(tissue.mask, rows, cols)
    outline = ndimage.binary_dilation(mask & ~ndimage.binary_erosion(mask), iterations=1)
    left[outline] = OUTLINE_RGB
    cell = grid.stride_l0_px / scale
    if flagged is not None and flagged.any():
        _outline_tiles(left, grid.grid_rc[flagged], cell)
    right = _feature_panel(grid, features, rows, cols, cell)

    font, small = ImageFont.load_default(size=18), ImageFont.load_default(size=14)
    header = 30 + 20 * len(caption.details)
    footer = 56
    canvas = Image.new(
        "RGB", (2 * cols + GAP_PX + 2 * MARGIN_PX, header + rows + footer), (255, 255, 255)
    )
    canvas.paste(Image.fromarray(left), (MARGIN_PX, header))
    canvas.paste(Image.fromarray(right), (MARGIN_PX + cols + GAP_PX, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN_PX, 6), caption.title, fill=TEXT_RGB, font=font)
    for i, line in enumerate(caption.details):
        draw.text((MARGIN_PX, 30 + 20 * i), line, fill=TEXT_RGB, font=small)
    _scale_bar(
        draw,
        small,
        MARGIN_PX,
        header + rows + 8,
        width_px=cols,
        um_per_px=scale * image.mpp / image.level0_px_per_px,
    )
    y = header + rows + 32
    x = MARGIN_PX
    draw.line([(x, y + 8), (x + 24, y + 8)], fill=OUTLINE_RGB, width=3)
    draw.text((x + 30, y), "tissue outline", fill=TEXT_RGB, font=small)
    x += 150
    draw.rectangle([x, y + 1, x + 14, y + 15], outline=FLAGGED_RGB, width=2)
    draw.text((x + 22, y), "tile flagged by QC (ink or blur)", fill=TEXT_RGB, font=small)
    draw.text(
        (MARGIN_PX + cols + GAP_PX, header + rows + 8),
        "tile features: first 3 principal components as RGB",
        fill=TEXT_RGB,
        font=small,
    )
    canvas.save(path, format="PNG")


def _fit(rgb: np.ndarray) -> np.ndarray:
    """The image with its long side PREVIEW_LONG_SIDE_PX (or less, never upsampled 4x+)."""
    rows, cols = rgb.shape[:2]
    factor = min(PREVIEW_LONG_SIDE_PX / max(rows, cols), 4.0)
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    if size == (cols, rows):
        return rgb
    resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(rgb).resize(size, resample))


def _feature_panel(
    grid: TileGrid, features: np.ndarray, rows: int, cols: int, cell: float
) -> np.ndarray:
    colours = np.full((*grid.grid_shape, 3), 255, np.uint8)
    if len(grid):
        colours[grid.grid_rc[:, 0], grid.grid_rc[:, 1]] = pca_rgb(features)
    ys = np.minimum((np.arange(rows) / cell).astype(int), grid.grid_shape[0])
    xs = np.minimum((np.arange(cols) / cell).astype(int), grid.grid_shape[1])
    padded = np.pad(colours, ((0, 1), (0, 1), (0, 0)), constant_values=255)
    return padded[ys][:, xs]


def _scale_bar(draw, font, x: int, y: int, *, width_px: int, um_per_px: float) -> None:
    """A bar of a round length near a fifth of the panel, in um or mm (the default font has
    no micro sign)."""
    target = width_px * um_per_px / 5
    length_um = min(SCALE_BAR_UM, key=lambda v: abs(np.log(v / target)))
    bar_px = max(1, round(length_um / um_per_px))
    draw.rectangle([x, y + 4, x + bar_px, y + 9], fill=TEXT_RGB)
    label = f"{length_um // 1000} mm" if length_um >= 1000 else f"{length_um} um"
    draw.text((x + bar_px + 8, y), label, fill=TEXT_RGB, font=font)


def _outline_tiles(image: np.ndarray, grid_rc: np.ndarray, cell_px: float) -> None:
    rows, cols = image.shape[:2]
    for r, c in grid_rc:
        y0, x0 = int(r * cell_px), int(c * cell_px)
        y1, x1 = min(rows, int((r + 1) * cell_px)) - 1, min(cols, int((c + 1) * cell_px)) - 1
        if y1 <= y0 or x1 <= x0:
            continue
        image[y0 : y0 + 2, x0 : x1 + 1] = image[y1 - 1 : y1 + 1, x0 : x1 + 1] = FLAGGED_RGB
        image[y0 : y1 + 1, x0 : x0 + 2] = image[y0 : y1 + 1, x1 - 1 : x1 + 1] = FLAGGED_RGB


def _resample_nearest(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    ys = np.minimum((np.arange(rows) * mask.shape[0] / rows).astype(int), mask.shape[0] - 1)
    xs = np.minimum((np.arange(cols) * mask.shape[1] / cols).astype(int), mask.shape[1] - 1)
    return mask[ys][:, xs]
