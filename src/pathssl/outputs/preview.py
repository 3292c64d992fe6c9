"""preview.png, for a person: the thumbnail with the tissue outline (green) and the tiles
flagged by tile QC (magenta) beside a PCA-to-RGB rendering of the tile features on the tile
grid."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from scipy import ndimage

from pathssl.tiling import TileGrid
from pathssl.tissue import Thumbnail, TissueMask

MAX_PCA_FIT_TILES = 10_000
CHUNK_TILES = 16_384
OUTLINE_RGB = (0, 200, 0)
FLAGGED_RGB = (230, 0, 230)  # tiles flagged by tile QC


def pca_rgb(features: h5py.Dataset) -> np.ndarray:
    """(N, 3) uint8: the first three principal components, each scaled to its 1-99% range."""
    n = features.shape[0]
    fit_idx = np.unique(np.linspace(0, n - 1, min(n, MAX_PCA_FIT_TILES)).astype(int))
    sample = features[fit_idx].astype(np.float64)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    comps = np.zeros((3, sample.shape[1]))
    comps[: min(3, len(vt))] = vt[:3]
    proj = np.concatenate(
        [(features[s : s + CHUNK_TILES] - mean) @ comps.T for s in range(0, n, CHUNK_TILES)]
    )
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    scaled = (proj - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def write_preview(
    path: Path,
    thumb: Thumbnail,
    tissue: TissueMask,
    grid: TileGrid,
    features: h5py.Dataset,
    flagged: np.ndarray | None = None,
) -> None:
    """`flagged` (N,) bool: tiles flagged by tile QC, outlined in magenta."""
    rows, cols = thumb.rgb.shape[:2]
    left = thumb.rgb.copy()
    mask = _resample_nearest(tissue.mask, rows, cols)
    outline = mask & ~ndimage.binary_erosion(mask, iterations=1)
    left[outline] = OUTLINE_RGB
    if flagged is not None and flagged.any():
        _outline_tiles(left, grid.grid_rc[flagged], grid.stride_l0_px / thumb.level0_px_per_px)
    colours = np.full((*grid.grid_shape, 3), 255, np.uint8)
    colours[grid.grid_rc[:, 0], grid.grid_rc[:, 1]] = pca_rgb(features)
    # Place the grid over the thumbnail: one grid cell spans stride / thumbnail scale pixels.
    cell = grid.stride_l0_px / thumb.level0_px_per_px
    ys = np.minimum((np.arange(rows) / cell).astype(int), grid.grid_shape[0])
    xs = np.minimum((np.arange(cols) / cell).astype(int), grid.grid_shape[1])
    padded = np.pad(colours, ((0, 1), (0, 1), (0, 0)), constant_values=255)
    right = padded[ys][:, xs]
    gap = np.full((rows, 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(path, format="PNG")


def _outline_tiles(image: np.ndarray, grid_rc: np.ndarray, cell_px: float) -> None:
    rows, cols = image.shape[:2]
    for r, c in grid_rc:
        y0, x0 = int(r * cell_px), int(c * cell_px)
        y1, x1 = min(rows, int((r + 1) * cell_px)) - 1, min(cols, int((c + 1) * cell_px)) - 1
        if y1 <= y0 or x1 <= x0:
            continue
        image[y0, x0 : x1 + 1] = image[y1, x0 : x1 + 1] = FLAGGED_RGB
        image[y0 : y1 + 1, x0] = image[y0 : y1 + 1, x1] = FLAGGED_RGB


def _resample_nearest(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    ys = np.minimum((np.arange(rows) * mask.shape[0] / rows).astype(int), mask.shape[0] - 1)
    xs = np.minimum((np.arange(cols) * mask.shape[1] / cols).astype(int), mask.shape[1] - 1)
    return mask[ys][:, xs]
