"""Marker ink is not tissue: histolab's real pen fixtures, real tissue kept, and a slide with
real ink strokes on glass beside real tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_WSI
from PIL import Image

from pathssl.slide.opening import open_slide
from pathssl.tiles.grid import TilingSpec, plan_tiles
from pathssl.tissue.detection import Thumbnail, detect_tissue, render_thumbnail
from pathssl.tissue.ink import ink_fraction, ink_mask

FIXTURES = SHARED_WSI.parent / "patches" / "histolab_fixture_tiles"


def fixture(name: str) -> np.ndarray:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only on development and CI machines)")
    return np.asarray(Image.open(path).convert("RGB"))


def tissue_share(rgb: np.ndarray) -> float:
    return float(detect_tissue(Thumbnail(rgb, 1.0, 8.0)).mask.mean())


@pytest.mark.parametrize("name", ["no-tissue-green-pen.png", "no-tissue-red-pen.png"])
def test_pen_only_tiles_are_not_tissue(name: str) -> None:
    rgb = fixture(name)
    # below the default --min-tissue of 25 %, so such a tile is never embedded (was 66 / 47 %)
    assert tissue_share(rgb) < 0.15
    assert ink_fraction(rgb) > 0.25


@pytest.mark.parametrize(
    "name",
    [
        "tissue-level0-7352-11762-7864-12274.png",
        "tissue-level2-4640-4649-8736-8746.png",
        "medium-nuclei-score-level0.png",  # eosin-rich stroma: pink, not red ink
        "high-nuclei-score-level0.png",
        "very-low-nuclei-score-level0.png",  # fat: faint
        "kidney-ihc-level0-340-520-390-550.png",  # pale IHC counterstain
        "liver-level2-10907-7808-11707-8608.png",
        "slidethumb_tcga-lung-rgb.png",
    ],
)
def test_real_tissue_is_not_ink(name: str) -> None:
    rgb = fixture(name)
    assert float(ink_mask(rgb).mean()) < 0.05
    assert tissue_share(rgb) > 0.35


def test_red_ink_over_tissue_no_longer_wins_the_threshold() -> None:
    rgb = fixture("slidethumb_tcga-red-pen.png")
    mask = detect_tissue(Thumbnail(rgb, 1.0, 8.0)).mask
    ink = ink_mask(rgb, grow_px=0)
    assert (mask & ink).mean() < 0.005  # the ink is out
    stained = rgb.max(axis=2).astype(int) - rgb.min(axis=2) > 40
    assert mask[stained & ~ink].mean() > 0.9  # the tissue beside it is in


def test_skimage_ihc_dab_is_not_ink() -> None:
    path = SHARED_WSI.parent / "patches" / "skimage_ihc.png"
    if not path.exists():
        pytest.skip(f"{path} not present")
    assert ink_fraction(np.asarray(Image.open(path).convert("RGB"))) < 0.02


def test_ink_strokes_on_glass_get_no_tile_and_tissue_keeps_its_tiles(
    tmp_path: Path, cmu_slide: Path
) -> None:
    """Real CMU tissue on the left; real green and red marker strokes (histolab's pen tiles,
    cut from TCGA slides) pasted on the glass to its right."""
    green, red = fixture("no-tissue-green-pen.png"), fixture("no-tissue-red-pen.png")
    with open_slide(cmu_slide) as slide:
        tissue_rgb = slide.read_region(0, 0, 0, *slide.dimensions)
    h, w = tissue_rgb.shape[:2]
    canvas = np.full((h, w + 1200, 3), 242, np.uint8)
    canvas[:, :w] = tissue_rgb
    canvas[200:712, w + 100 : w + 612] = green
    canvas[1200:1712, w + 500 : w + 1012] = red
    path = tmp_path / "ink-beside-tissue.tif"
    Image.fromarray(canvas).save(path, dpi=(25_400 / 0.499, 25_400 / 0.499))

    spec = TilingSpec(1.0, 112, min_tissue_fraction=0.25)
    with open_slide(path) as slide:
        tissue = detect_tissue(render_thumbnail(slide, 0.499))
        grid = plan_tiles(slide.levels, 0.499, tissue, spec)
    with open_slide(cmu_slide) as slide:
        alone = plan_tiles(slide.levels, 0.499, detect_tissue(render_thumbnail(slide, 0.499)), spec)
    xs = grid.coords_l0[:, 0]
    assert (xs + grid.stride_l0_px <= w + 50).all(), "a tile landed on the ink"
    assert tissue.ink_fraction > 0.01
    assert abs(len(grid) - len(alone)) <= 2  # the tissue keeps its tiles
