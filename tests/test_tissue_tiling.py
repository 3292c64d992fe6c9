"""Tissue detection (brightfield, fluorescence, given masks) and the tile grid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_slide

from pathssl.errors import SlideReadError, TissueError
from pathssl.slide import open_slide, resolve_mpp
from pathssl.tiles.grid import TilingSpec, choose_level, plan_tiles
from pathssl.tissue.detection import (
    TissueMask,
    detect_tissue,
    is_fluorescence,
    load_tissue_mask,
    render_thumbnail,
)

ROOT = Path(__file__).resolve().parents[1]


def _thumb_and_mask(path: Path, mpp: float | None = None):
    with open_slide(path) as slide:
        res = resolve_mpp(slide, mpp)
        thumb = render_thumbnail(slide, res.mpp)
        return slide.levels, res.mpp, thumb, detect_tissue(thumb)


def test_thumbnail_matches_a_direct_read(cmu_slide: Path) -> None:
    """Every thumbnail pixel of a whole 16 x 16 block is the mean of that block of a direct
    level-0 read (the JPEG fast path decodes at 1/8 scale: within rounding)."""
    with open_slide(cmu_slide) as slide:
        thumb = render_thumbnail(slide, 0.499)
        factor = round(thumb.level0_px_per_px)
        assert factor == 16 and thumb.mpp == pytest.approx(0.499 * 16)
        width, height = slide.dimensions
        direct = slide.read_region(0, 0, 0, width, height)
    assert thumb.rgb.dtype == np.uint8
    assert thumb.rgb.shape == (-(-height // factor), -(-width // factor), 3)
    rows, cols = height // factor, width // factor  # blocks wholly inside the slide
    blocks = direct[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor, 3)
    diff = np.abs(thumb.rgb[:rows, :cols] - blocks.mean(axis=(1, 3)))
    assert diff.mean() < 0.5 and diff.max() <= 3, (diff.mean(), diff.max())


def test_brightfield_tissue_is_stained_and_background_is_glass(cmu_slide: Path) -> None:
    _, _, thumb, tissue = _thumb_and_mask(cmu_slide)
    assert tissue.source == "detected-brightfield"
    assert 0.2 < tissue.mask.mean() < 0.6
    rgb = thumb.rgb.astype(float)
    sat = (rgb.max(2) - rgb.min(2)) / np.maximum(rgb.max(2), 1)
    assert sat[tissue.mask].mean() > 3 * sat[~tissue.mask].mean()
    assert rgb[~tissue.mask].mean() > 200 and sat[~tissue.mask].mean() < 0.06  # glass: bright, grey
    assert rgb[tissue.mask].mean() < rgb[~tissue.mask].mean()  # stain absorbs light


def test_fluorescence_detected_automatically() -> None:
    _, _, thumb, tissue = _thumb_and_mask(shared_slide("hamamatsu_test3-DAPI-2-387.ndpi"))
    assert is_fluorescence(thumb.rgb)
    assert tissue.source == "detected-fluorescence"
    grey = thumb.rgb.mean(axis=2)
    assert 0.05 < tissue.mask.mean() < 0.9
    assert grey[tissue.mask].mean() > 2 * grey[~tissue.mask].mean()  # bright on black


def test_specks_removed_and_small_holes_filled() -> None:
    from pathssl.tissue.detection import Thumbnail

    rgb = np.full((200, 400, 3), 235, np.uint8)
    rgb[40:160, 40:160] = (150, 60, 140)  # a tissue piece (~0.9 mm2 at 8 um/px)
    rgb[95:100, 95:100] = 235  # a 5x5 px hole (1,600 um2)
    rgb[5:7, 190:192] = (150, 60, 140)  # a 2x2 px speck (256 um2)
    rgb[40:160, 240:360] = (150, 60, 140)  # a second piece ...
    rgb[80:120, 280:320] = 235  # ... with a 40x40 px hole (102,400 um2): a real gap
    tissue = detect_tissue(Thumbnail(rgb, 16.0, 8.0))
    assert tissue.mask[95:100, 95:100].all()  # the small hole filled
    assert not tissue.mask[5:7, 190:192].any()  # the speck removed
    assert tissue.mask[40:160, 40:160].mean() > 0.97
    assert not tissue.mask[85:115, 285:315].any()  # a large hole is no hole to fill
    assert not tissue.mask[:, 170:230].any()  # nothing but the pieces


def test_blank_slide_has_no_tiles() -> None:
    from pathssl.slide.reader import SlideLevel
    from pathssl.tissue.detection import Thumbnail

    tissue = detect_tissue(Thumbnail(np.full((100, 100, 3), 240, np.uint8), 16.0, 8.0))
    assert not tissue.mask.any()
    with pytest.raises(TissueError, match="no tile") as err:
        plan_tiles((SlideLevel(1600, 1600, 1.0),), 0.5, tissue, TilingSpec(0.5, 224), "blank.svs")
    assert str(err.value).startswith("blank.svs: ") and "0.0% of the slide" in str(err.value)


def test_grid_row_major_inside_slide_and_tissue(cmu_slide: Path) -> None:
    levels, mpp, _, tissue = _thumb_and_mask(cmu_slide)
    spec = TilingSpec(0.5, 224)
    grid = plan_tiles(levels, mpp, tissue, spec)
    assert grid.level == 0 and grid.read_size_px == 224 and grid.stride_l0_px == 224
    coords = grid.coords_l0
    keys = coords[:, 1] * 10**6 + coords[:, 0]
    assert (np.diff(keys) > 0).all()  # row-major, no duplicates
    # inside the slide: every tile's box within the level-0 dimensions
    width, height = levels[0].width, levels[0].height
    assert (width, height) == (2220, 2967)
    assert (coords >= 0).all()
    assert (coords[:, 0] + grid.stride_l0_px <= width).all()
    assert (coords[:, 1] + grid.stride_l0_px <= height).all()
    # inside tissue: each tile's share of mask pixels, counted here on the mask itself (a
    # tile is 14 x 14 mask pixels of 16 level-0 px), is the recorded fraction and enough
    scale = round(tissue.level0_px_per_mask_px[0])
    assert tissue.level0_px_per_mask_px == (scale, scale) and grid.stride_l0_px % scale == 0
    side = grid.stride_l0_px // scale
    boxes = [(y // scale, x // scale) for x, y in coords]  # top-left, in mask pixels
    counted = np.array([tissue.mask[r : r + side, c : c + side].mean() for r, c in boxes])
    np.testing.assert_allclose(grid.tissue_fraction, counted)
    assert (counted >= spec.min_tissue_fraction).all()
    # and no tile with enough tissue was left out
    rows, cols = grid.grid_shape
    cells = tissue.mask[: rows * side, : cols * side].reshape(rows, side, cols, side)
    enough = np.argwhere(cells.mean(axis=(1, 3)) >= spec.min_tissue_fraction)
    np.testing.assert_array_equal(enough, grid.grid_rc)


def test_level_choice_reads_finer_level_and_resizes() -> None:
    levels, mpp, _, tissue = _thumb_and_mask(shared_slide("hamamatsu_test3-DAPI-2-387.ndpi"))
    spec = TilingSpec(0.5, 224)
    assert choose_level(levels, mpp, spec) == 1  # 0.456 um/px: finer than 0.5, level 2 is not
    grid = plan_tiles(levels, mpp, tissue, spec)
    assert grid.read_size_px == round(224 * 0.5 / (2 * mpp))
    assert grid.patch_mpp == pytest.approx(0.5, rel=0.01)
    # a target within tolerance of a level is read at that level without resizing
    grid2 = plan_tiles(levels, mpp, tissue, TilingSpec(2 * mpp * 1.02, 224))
    assert (grid2.level, grid2.read_size_px) == (1, 224)


def test_cap_is_even_and_deterministic(cmu_slide: Path) -> None:
    levels, mpp, _, tissue = _thumb_and_mask(cmu_slide)
    spec = TilingSpec(0.5, 112)
    full = plan_tiles(levels, mpp, tissue, spec)
    capped = plan_tiles(levels, mpp, tissue, replace(spec, max_tiles=20))
    again = plan_tiles(levels, mpp, tissue, replace(spec, max_tiles=20))
    assert len(capped) == 20
    np.testing.assert_array_equal(capped.grid_rc, again.grid_rc)
    pos = [np.flatnonzero((full.grid_rc == rc).all(axis=1))[0] for rc in capped.grid_rc]
    assert pos[0] == 0 and pos[-1] == len(full) - 1
    assert np.ptp(np.diff(pos)) <= 1  # evenly spaced through the row-major list


def test_given_mask_replaces_detection(cmu_slide: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    mask = np.zeros((297, 222), np.uint8)  # 1/10 of the slide
    mask[:100, :111] = 1  # top-left only
    path = tmp_path / "mask.mha"
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(path))
    with open_slide(cmu_slide) as slide:
        given = load_tissue_mask(path, slide, 0.499)
        levels = slide.levels
    assert given.source == "input:mask.mha"
    np.testing.assert_array_equal(given.mask, mask.astype(bool))  # the mask as given
    assert given.level0_px_per_mask_px == pytest.approx((10.0, 2967 / 297))
    grid = plan_tiles(levels, 0.499, given, TilingSpec(0.5, 224, min_tissue_fraction=1.0))
    assert (grid.coords_l0[:, 0] + 224 <= 1110).all() and (grid.coords_l0[:, 1] + 224 <= 1000).all()
    assert len(grid) == (1000 // 224) * (1110 // 224)


def test_mask_of_wrong_shape_refused(cmu_slide: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    path = tmp_path / "wide.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((100, 400), np.uint8)), str(path))
    with open_slide(cmu_slide) as slide, pytest.raises(SlideReadError) as err:
        load_tissue_mask(path, slide, 0.499)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "400x100 px" in message
    assert "not the shape of the slide (2220x2967 px)" in message and "\n" not in message


def test_fractions_on_a_known_mask() -> None:
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True
    tm = TissueMask(mask, (10.0, 10.0), 5.0, "test")
    np.testing.assert_allclose(
        tm.fractions(np.array([0, 30, 50]), np.array([0, 0, 0]), 40), [1.0, 0.5, 0.0]
    )


def test_svs_and_its_grand_challenge_tiff_give_the_same_tiles(cmu_slide: Path) -> None:
    """The same tissue through two pyramids (the .svs has one level; panimg's TIFF of it six):
    the mask is rendered from a level at least 2 um/px fine in both, so the tiles agree."""
    gc_tiff = next((ROOT / "test/input/wsi/images/whole-slide-image").iterdir())
    for spec in (TilingSpec(target_mpp=1.0, tile_size_px=112), TilingSpec(2.0, 32)):
        tiles = []
        for path in (cmu_slide, gc_tiff):
            with open_slide(path) as slide:
                mpp = resolve_mpp(slide, None).mpp
                tissue = detect_tissue(render_thumbnail(slide, mpp))
                grid = plan_tiles(slide.levels, mpp, tissue, spec)
            tiles.append(sorted(map(tuple, grid.coords_l0.tolist())))
        assert tiles[0] == tiles[1] and len(tiles[0]) > 40


def test_thumbnail_chunks_read_in_threads_equal_one_by_one(cmu_slide: Path, monkeypatch) -> None:
    """OpenSlide renders the thumbnail's chunks on several threads; every pixel is the one a
    single thread gives (small chunks, so the CMU slide has many)."""
    from pathssl.tissue import detection

    monkeypatch.setattr(detection, "CHUNK_SIDE_PX", 256)
    with open_slide(cmu_slide) as slide:
        assert slide.concurrent_reads  # OpenSlide
        mpp = resolve_mpp(slide, None).mpp
        threaded = render_thumbnail(slide, mpp, target_mpp=1.0, source_mpp=None)
        monkeypatch.setattr(type(slide), "concurrent_reads", False)
        alone = render_thumbnail(slide, mpp, target_mpp=1.0, source_mpp=None)
    # chunks of 128 thumbnail rows (256 level px at factor 2): several of them
    assert threaded.rgb.shape == alone.rgb.shape and threaded.rgb.shape[0] > 2 * 128
    np.testing.assert_array_equal(threaded.rgb, alone.rgb)
    assert threaded.rgb.std() > 10  # real tissue, not an empty canvas
