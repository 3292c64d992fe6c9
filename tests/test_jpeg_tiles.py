"""JPEG tiles decoded from their compressed bytes (the GPU decode path), run here on the CPU
with the same code: pixels must equal OpenSlide's (both use libjpeg-turbo on the CPU; a GPU
decoder may differ by JPEG decoder rounding, which these tests cannot see)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest
from conftest import shared_slide

from pathssl.errors import SlideReadError
from pathssl.slide.jpeg_tiles import jpeg_tile_levels, read_region

ROOT = Path(__file__).resolve().parents[1]
GC_TIFF = next((ROOT / "test/input/wsi/images/whole-slide-image").iterdir())


def _openslide_rgb(
    slide: openslide.OpenSlide, xy: tuple[int, int], level: int, size: tuple[int, int]
):
    """OpenSlide's public read_region, with its arguments, as RGB."""
    rgba = np.asarray(slide.read_region(xy, level, size).convert("RGBA"))
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
        ours = read_region(lv, 0, 0, lv.width, lv.height, device="cpu").permute(1, 2, 0).numpy()
        reference = _openslide_rgb(slide, (0, 0), index, (lv.width, lv.height))
        diff = np.abs(ours.astype(int) - reference.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.05, (index, diff.max(), diff.mean())


def test_regions_across_tiles_and_past_the_edges() -> None:
    slide = openslide.OpenSlide(str(GC_TIFF))
    lv = jpeg_tile_levels(GC_TIFF, list(slide.level_dimensions))[0]
    for x, y in [(100, 700), (127, 127), (lv.width - 200, lv.height - 150), (-50, -30)]:
        ours = read_region(lv, x, y, 300, 260, device="cpu").permute(1, 2, 0).numpy()
        reference = _openslide_rgb(slide, (x, y), 0, (300, 260))
        assert np.array_equal(ours, reference), (x, y)
    outside = read_region(lv, lv.width + 10, 0, 64, 64, device="cpu")
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

    from pathssl.slide import open_slide, resolve_mpp
    from pathssl.tiles.compressed import CompressedTileReader
    from pathssl.tiles.grid import TilingSpec, plan_tiles
    from pathssl.tiles.loading import TileBlockDataset, plan_blocks
    from pathssl.tissue.detection import detect_tissue, render_thumbnail

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


def _without_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import pathssl.tissue.detection as tissue

    monkeypatch.setattr(tissue, "_reduced_from_jpeg_tiles", lambda *args: None)


def test_dct_scaled_thumbnail_matches_the_full_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat slide's thumbnail from tiles decoded at 1/8 scale equals, to rounding, the box
    reduction of the fully decoded level, and finds the same tissue."""
    from pathssl.slide import open_slide, resolve_mpp
    from pathssl.tissue.detection import detect_tissue, render_thumbnail

    with open_slide(ROOT / "tests/data/CMU-1-Small-Region.svs") as slide:  # one level
        mpp = resolve_mpp(slide, None).mpp
        fast = render_thumbnail(slide, mpp)
        _without_fast_path(monkeypatch)
        full = render_thumbnail(slide, mpp)
    assert fast.rgb.shape == full.rgb.shape and fast.mpp == full.mpp
    diff = np.abs(fast.rgb.astype(int) - full.rgb.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 3
    a, b = detect_tissue(fast).mask, detect_tissue(full).mask
    assert (a != b).mean() < 0.001


def test_sparse_flat_tiff_decodes_only_its_tiles(tmp_path: Path) -> None:
    """A flat TIFF whose tiles are mostly absent (byte count 0): the thumbnail decodes the
    present ones only; the rest is white."""
    import tifffile

    from pathssl.slide import open_slide, resolve_mpp
    from pathssl.tissue.detection import render_thumbnail

    side, tile = 8192, 512
    path = tmp_path / "sparse.tif"
    stained = np.full((tile, tile, 3), (150, 60, 140), np.uint8)
    tiles = (stained for _ in range((side // tile) ** 2))
    tifffile.imwrite(
        path,
        tiles,
        shape=(side, side, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="jpeg",
        photometric="rgb",
        resolution=(1e4 / 0.25, 1e4 / 0.25),
        resolutionunit="CENTIMETER",
    )
    keep = 5 * (side // tile) + 7  # one tile stays: row 5, column 7
    with tifffile.TiffFile(path, mode="r+b") as tif:
        page = tif.pages[0]
        counts = [c if i == keep else 0 for i, c in enumerate(page.databytecounts)]
        offsets = [o if i == keep else 0 for i, o in enumerate(page.dataoffsets)]
        page.tags[325].overwrite(counts)
        page.tags[324].overwrite(offsets)
    with open_slide(path) as slide:
        thumb = render_thumbnail(slide, resolve_mpp(slide, None).mpp)
    cell = tile // 32  # 0.25 um/px rendered at 8 um/px: 32 x 32 px per thumbnail pixel
    inside = thumb.rgb[5 * cell : 6 * cell, 7 * cell : 8 * cell].reshape(-1, 3).mean(axis=0)
    assert np.abs(inside - (150, 60, 140)).max() < 4
    outside = np.ones(thumb.rgb.shape[:2], bool)
    outside[5 * cell : 6 * cell, 7 * cell : 8 * cell] = False
    assert (thumb.rgb[outside] == 255).all()


def test_a_damaged_tile_in_a_batch_is_named(tmp_path: Path) -> None:
    """A batch decode fails as a whole; the error must name the tile that fails, not the
    batch's first."""
    cmu = ROOT / "tests/data/CMU-1-Small-Region.svs"
    damaged = tmp_path / "damaged.svs"
    shutil.copy(cmu, damaged)
    (lv,) = jpeg_tile_levels(damaged, [openslide.OpenSlide(str(cmu)).dimensions])
    row, col = 1, 2  # inside the region read below, not its first tile
    index = row * lv.grid[1] + col
    with open(damaged, "r+b") as fh:  # wreck the header after SOI: no image to decode
        fh.seek(int(lv.offsets[index]) + 2)
        fh.write(b"\x00" * 32)
    with pytest.raises(SlideReadError) as err:
        read_region(lv, 0, 0, 4 * lv.tile_width, 3 * lv.tile_height, device="cpu")
    message = str(err.value)
    assert "\n" not in message and str(damaged) in message and "damaged or truncated" in message
    assert f"x={col * lv.tile_width} y={row * lv.tile_height} " in message
    # the same region of the intact slide decodes: the damage is the only cause
    (intact,) = jpeg_tile_levels(cmu, [openslide.OpenSlide(str(cmu)).dimensions])
    assert (
        read_region(intact, 0, 0, 4 * lv.tile_width, 3 * lv.tile_height, device="cpu").shape[0] == 3
    )
