"""The tile grid: which pyramid level to read, how large a region, and which tiles to keep.

Tiles lie on a regular level-0 grid, are read from the nearest pyramid level that is not
coarser than the target resolution (then resized), and are kept in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pathssl.errors import ResolutionError, TissueError
from pathssl.slide.reader import SlideLevel
from pathssl.tissue.detection import TissueMask


@dataclass(frozen=True)
class TilingSpec:
    target_mpp: float  # microns per pixel the encoder expects
    tile_size_px: int  # tile side at target_mpp (the encoder's input size)
    mpp_tolerance: float = 0.05  # a level within this relative distance is read without resize
    min_tissue_fraction: float = 0.25
    max_tiles: int | None = None  # cap, by deterministic even subsampling
    # A slide whose finest level is coarser than target_mpp has its tiles upscaled, which
    # invents no detail: refused beyond this factor (above the tolerance); None: no limit.
    max_upscale: float | None = 2.0


@dataclass(frozen=True)
class TileGrid:
    level: int  # pyramid level the tiles are read from
    level_mpp: float
    read_size_px: int  # tile side read at `level`, before resizing to tile_size_px
    tile_size_px: int
    stride_l0_px: int  # tile side (and grid step) in level-0 pixels
    patch_mpp: float  # microns per pixel of the tiles the encoder sees
    grid_shape: tuple[int, int]  # (rows, cols) of the full grid over the slide
    grid_rc: np.ndarray = field(repr=False)  # (N, 2) int: row, col of each kept tile
    tissue_fraction: np.ndarray = field(repr=False)  # (N,) float
    tissue_tiles: int = -1  # tiles on tissue before the max_tiles cap (-1: not recorded)

    @property
    def coords_l0(self) -> np.ndarray:
        """(N, 2) int64 top-left (x, y) of each tile in level-0 pixels."""
        return self.grid_rc[:, ::-1].astype(np.int64) * self.stride_l0_px

    def __len__(self) -> int:
        return len(self.grid_rc)


def choose_level(levels: tuple[SlideLevel, ...], mpp: float, spec: TilingSpec) -> int:
    """The coarsest level whose resolution is at least as fine as the target (within the
    tolerance); level 0 if even that is coarser."""
    limit = spec.target_mpp * (1.0 + spec.mpp_tolerance)
    candidates = [i for i, lv in enumerate(levels) if lv.downsample * mpp <= limit]
    if not candidates:
        return 0
    return max(candidates, key=lambda i: levels[i].downsample)


def check_upscale(mpp: float, spec: TilingSpec, slide_label: str = "slide") -> None:
    """Refuse a slide whose level 0 is more than max_upscale times coarser than the model's
    resolution (beyond the tolerance): its tiles would be blown up from a few pixels."""
    if spec.max_upscale is None:
        return
    limit = spec.max_upscale * spec.target_mpp * (1.0 + spec.mpp_tolerance)
    if mpp > limit:
        factor = mpp / spec.target_mpp
        raise ResolutionError(
            f"{slide_label}: its finest level is {mpp:.4g} microns per pixel, {factor:.3g}x "
            f"coarser than the model's {spec.target_mpp:.4g} microns per pixel: its tiles would be "
            f"upscaled more than {spec.max_upscale:g}x, inventing detail; embed a scan at "
            f"{spec.target_mpp:.4g} microns per pixel or finer, use a model trained at a coarser "
            "resolution, check --mpp if you gave it, or pass --allow-upscale to embed it anyway"
        )


def plan_tiles(
    levels: tuple[SlideLevel, ...],
    mpp: float,
    tissue: TissueMask,
    spec: TilingSpec,
    slide_label: str = "slide",
) -> TileGrid:
    check_upscale(mpp, spec, slide_label)
    level = choose_level(levels, mpp, spec)
    lv = levels[level]
    level_mpp = mpp * lv.downsample
    if abs(level_mpp - spec.target_mpp) <= spec.mpp_tolerance * spec.target_mpp:
        read_size = spec.tile_size_px
    else:
        read_size = max(1, round(spec.tile_size_px * spec.target_mpp / level_mpp))
    stride_l0 = max(1, round(read_size * lv.downsample))
    w0, h0 = levels[0].width, levels[0].height
    rows, cols = h0 // stride_l0, w0 // stride_l0
    if rows == 0 or cols == 0:
        raise TissueError(
            f"{slide_label}: {w0}x{h0} px at {mpp:.4g} microns per pixel is smaller than one "
            f"tile of {spec.tile_size_px} px at {spec.target_mpp} microns per pixel"
        )
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    grid_rc = np.stack([rr.ravel(), cc.ravel()], axis=1)
    xs, ys = grid_rc[:, 1] * stride_l0, grid_rc[:, 0] * stride_l0
    fraction = tissue.fractions(xs, ys, stride_l0)
    keep = fraction >= spec.min_tissue_fraction
    if not keep.any():
        raise TissueError(
            f"{slide_label}: no tile has at least {spec.min_tissue_fraction:.0%} tissue "
            f"(tissue covers {tissue.mask.mean():.1%} of the slide); check the slide, give a "
            "tissue mask, or lower --min-tissue"
        )
    grid_rc, fraction = grid_rc[keep], fraction[keep]
    tissue_tiles = len(grid_rc)
    if spec.max_tiles is not None and len(grid_rc) > spec.max_tiles:
        pick = np.unique(np.linspace(0, len(grid_rc) - 1, spec.max_tiles).round().astype(int))
        grid_rc, fraction = grid_rc[pick], fraction[pick]
    return TileGrid(
        level=level,
        level_mpp=level_mpp,
        read_size_px=read_size,
        tile_size_px=spec.tile_size_px,
        stride_l0_px=stride_l0,
        patch_mpp=read_size * level_mpp / spec.tile_size_px,
        grid_shape=(rows, cols),
        grid_rc=grid_rc,
        tissue_fraction=fraction,
        tissue_tiles=tissue_tiles,
    )
