"""JPEG tiles decoded from their compressed bytes (the GPU decode path), run here on the CPU
with the same code: pixels must equal OpenSlide's (both use libjpeg-turbo on the CPU; a GPU
decoder may differ by JPEG decoder rounding, which these tests cannot see)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
from conftest import shared_slide

from pathssl.slide.jpeg_tiles import jpeg_tile_levels, read_region

ROOT = Path(__file__).resolve().parents[1]
GC_TIFF = next((ROOT / "test/input/wsi/images/whole-slide-image").iterdir())


def _openslide_rgb(slide: openslide.OpenSlide, x0: int, y0: int, level: int, w: int, h: int):
    rgba = np.asarray(slide.read_region((x0, y0), level, (w, h)).convert("RGBA"))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255  # transparent (outside the image) is white here
    return rgb


@pytest.mark.parametrize(
    ("path", "expected_levels", "rgb_encoded"),
    [(ROOT / "tests/data/CMU-1-Small-Region.svs", 1, True), (GC_TIFF, 6, False)],
    ids=["aperio-svs-rgb-jpeg", "grand-challenge-tiff-ycbcr"],
)
def test_every_level_decodes_to_openslides_pixels(
    path: Path, expected_levels: int, rgb_encoded: bool
) -> None:
    slide = openslide.OpenSlide(str(path))
    levels = jpeg_tile_levels(path, list(slide.level_dimensions))
    assert len(levels) == expected_levels
    assert all(lv.rgb_encoded == rgb_encoded for lv in levels)
    for index, lv in enumerate(levels):
        ours = read_region(lv, 0, 0, lv.width, lv.height, "cpu").permute(1, 2, 0).numpy()
        reference = _openslide_rgb(slide, 0, 0, index, lv.width, lv.height)
        diff = np.abs(ours.astype(int) - reference.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.05, (index, diff.max(), diff.mean())


def test_regions_across_tiles_and_past_the_edges() -> None:
    slide = openslide.OpenSlide(str(GC_TIFF))
    lv = jpeg_tile_levels(GC_TIFF, list(slide.level_dimensions))[0]
    for x, y in [(100, 700), (127, 127), (lv.width - 200, lv.height - 150), (-50, -30)]:
        ours = read_region(lv, x, y, 300, 260, "cpu").permute(1, 2, 0).numpy()
        reference = _openslide_rgb(slide, x, y, 0, 300, 260)
        assert np.array_equal(ours, reference), (x, y)
    outside = read_region(lv, lv.width + 10, 0, 64, 64, "cpu")
    assert (outside == 255).all()


@pytest.mark.parametrize(
    "name", ["aperio_jp2k_TCGA-CR-7395-01A-01-TS1.svs", "hamamatsu_test3-DAPI-2-387.ndpi"]
)
def test_other_compressions_are_left_to_openslide(name: str) -> None:
    path = shared_slide(name)
    slide = openslide.OpenSlide(str(path))
    assert jpeg_tile_levels(path, list(slide.level_dimensions)) == []


@pytest.mark.parametrize(
    ("path", "target_mpp", "tile_px", "max_mean", "max_abs"),
    [
        (ROOT / "tests/data/CMU-1-Small-Region.svs", 1.0, 112, 0.0, 0),  # read 224, box 2x2
        (ROOT / "tests/data/CMU-1-Small-Region.svs", 2.0, 32, 0.0, 0),  # read 128, box 4x4
        (ROOT / "tests/data/CMU-1-Small-Region.svs", 0.8, 100, 0.2, 1),  # bilinear resize
        (GC_TIFF, 0.5, 224, 0.0, 0),  # level 0 as is
        (GC_TIFF, 1.0, 112, 2.5, 255),  # level 1: OpenSlide's sub-pixel shift, see the module
    ],
    ids=["svs-box2", "svs-box4", "svs-bilinear", "tiff-level0", "tiff-level1-shifted"],
)
def test_compressed_tile_loader_gives_the_cpu_loaders_tiles(
    path: Path, target_mpp: float, tile_px: int, max_mean: float, max_abs: int
) -> None:
    """The GPU loader's code, run on the CPU device, against the CPU loader (OpenSlide): the
    same tiles in the same order, the same pixels where OpenSlide reads pixels as they are."""
    import torch

    from pathssl.compressed_tile_loader import CompressedTileReader
    from pathssl.loading import TileBlockDataset, plan_blocks
    from pathssl.slide import open_slide, resolve_mpp
    from pathssl.tiling import TilingSpec, plan_tiles
    from pathssl.tissue import detect_tissue, render_thumbnail

    with open_slide(path) as slide:
        mpp = resolve_mpp(slide, None).mpp
        tissue = detect_tissue(render_thumbnail(slide, mpp))
        grid = plan_tiles(slide.levels, mpp, tissue, TilingSpec(target_mpp, tile_px))
        downsample = slide.levels[grid.level].downsample
        sizes = [(lv.width, lv.height) for lv in slide.levels]
    blocks = plan_blocks(grid, downsample)
    cpu = TileBlockDataset(path, grid, blocks, downsample)
    level = jpeg_tile_levels(path, sizes)[grid.level]
    reader = CompressedTileReader(level, grid, blocks, downsample, "cpu")
    diffs, tiles = [], 0
    for i, (ours, index) in enumerate(reader):
        theirs, their_index = cpu[i]
        assert torch.equal(index, their_index) and ours.shape == theirs.shape
        diffs.append((ours.int() - theirs.int()).abs())
        tiles += len(index)
    cpu.close()
    diff = torch.cat([d.flatten() for d in diffs]).float()
    assert tiles == len(grid) > 20
    assert diff.mean() <= max_mean and diff.max() <= max_abs, (diff.mean(), diff.max())
