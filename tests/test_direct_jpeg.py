"""OpenSlide's reader decodes JPEG-tiled TIFF levels itself (slide/direct_jpeg.py): every
region must equal what OpenSlide's own read gives, byte for byte; levels and regions where
they could differ must be left to OpenSlide; a damaged tile must fail in one line."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import openslide
import pytest

from pathssl.errors import SlideReadError
from pathssl.slide import open_slide
from pathssl.slide.jpeg_tiles import jpeg_tile_levels, tile_streams

ROOT = Path(__file__).resolve().parents[1]
CMU = ROOT / "tests/data/CMU-1-Small-Region.svs"  # Aperio, RGB-coded JPEG, one level
IHC = next((ROOT / "test/input/task04-ihc-classification/images/ihc-staining-for-pd-l1").iterdir())
GC_TIFF = next((ROOT / "test/input/wsi/images/whole-slide-image").iterdir())  # levels 2.0003x


def _openslide(path: Path, x_l0: int, y_l0: int, level: int, w: int, h: int) -> np.ndarray:
    """OpenSlide's public read_region, transparent areas white."""
    rgba = np.asarray(openslide.OpenSlide(str(path)).read_region((x_l0, y_l0), level, (w, h)))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def _regions(width: int, height: int, ds: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Level-0 origins on the level's grid and sizes in level pixels: inside, across tile
    borders, past the right and bottom edges, and starting left of and above the image."""
    rng = np.random.default_rng(seed)
    lw, lh = width // ds, height // ds
    out = [(0, 0, min(lw, 700), min(lh, 500)), (-64 * ds, -32 * ds, 300, 200)]
    out.append(((lw - 100) * ds, (lh - 80) * ds, 300, 250))  # past both edges
    for _ in range(6):
        w, h = int(rng.integers(1, 900)), int(rng.integers(1, 900))
        x, y = int(rng.integers(0, max(1, lw - 1))), int(rng.integers(0, max(1, lh - 1)))
        out.append((x * ds, y * ds, w, h))
    return out


@pytest.mark.parametrize("path", [CMU, IHC], ids=["aperio-svs", "pyramidal-tiff"])
def test_regions_equal_openslides_own_read(path: Path) -> None:
    slide = open_slide(path)
    checked = 0
    for level, lv in enumerate(slide.levels):
        assert "libjpeg-turbo" in slide.region_decoder(level), level
        ds = int(lv.downsample)
        for x, y, w, h in _regions(*slide.dimensions, ds, seed=level):
            mine = slide.read_region(x, y, level, w, h)
            assert np.array_equal(mine, _openslide(path, x, y, level, w, h)), (level, x, y, w, h)
            image = np.asarray(slide.read_region_image(x, y, level, w, h))
            assert np.array_equal(image, mine)
            checked += 1
    assert checked >= 9


def test_inexact_levels_and_off_grid_origins_stay_with_openslide() -> None:
    slide = open_slide(GC_TIFF)
    assert "libjpeg-turbo" in slide.region_decoder(0)
    for level in range(1, len(slide.levels)):  # downsample 2.0003...: OpenSlide interpolates
        assert slide.levels[level].downsample % 1 != 0
        assert slide.region_decoder(level) == "openslide"
        # the backend's own OpenSlide read (edges partly transparent: composited on white)
        assert np.array_equal(
            slide.read_region(1000, 800, level, 200, 150),
            slide._openslide(1000, 800, level, 200, 150),
        )
    ihc = open_slide(IHC)
    assert ihc.levels[2].downsample == 4
    # an origin off level 2's pixel grid: OpenSlide shifts by the fraction; so must we
    for x, y in [(1001, 802), (1003, 800)]:
        assert np.array_equal(ihc.read_region(x, y, 2, 300, 200), ihc._openslide(x, y, 2, 300, 200))


def test_a_level_that_decodes_differently_is_left_to_openslide(monkeypatch) -> None:
    from pathssl.slide import direct_jpeg

    monkeypatch.setattr(direct_jpeg, "_CHECKED", {})
    real = direct_jpeg.DirectJpegLevels._decode

    def off_by_one(lv, row, col):
        tile = real(lv, row, col)
        return None if tile is None else tile ^ np.uint8(1)

    monkeypatch.setattr(direct_jpeg.DirectJpegLevels, "_decode", staticmethod(off_by_one))
    slide = open_slide(CMU)
    assert slide.region_decoder(0) == "openslide"
    assert np.array_equal(slide.read_region(0, 0, 0, 600, 400), _openslide(CMU, 0, 0, 0, 600, 400))


def test_a_damaged_tile_fails_in_one_line_naming_the_file(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.svs"
    shutil.copy(CMU, damaged)
    (lv,) = jpeg_tile_levels(damaged, [open_slide(CMU).dimensions])
    index = 0  # the first tile; the probe reads the one nearest the middle
    with open(damaged, "r+b") as fh:  # keep the markers, wreck the entropy-coded data
        fh.seek(int(lv.offsets[index]) + int(lv.byte_counts[index]) // 2)
        fh.write(b"\xff\xd9" + b"\x00" * 64)
    slide = open_slide(damaged)
    assert "libjpeg-turbo" in slide.region_decoder(0)
    with pytest.raises(SlideReadError) as err:
        slide.read_region(0, 0, 0, 200, 200)
    message = str(err.value)
    assert "\n" not in message and str(damaged) in message and "damaged or truncated" in message


def test_a_tile_past_the_end_of_the_file_fails_in_one_line(tmp_path: Path) -> None:
    """A file cut short: the last tile's bytes run past its end."""
    (lv,) = jpeg_tile_levels(CMU, [open_slide(CMU).dimensions])
    last = int(np.argmax(lv.offsets))
    cut = tmp_path / "cut.svs"
    cut.write_bytes(CMU.read_bytes()[: int(lv.offsets[last]) + int(lv.byte_counts[last]) // 2])
    level = replace(lv, path=cut)
    with pytest.raises(SlideReadError) as err:
        tile_streams(level, [last])
    message = str(err.value)
    assert "\n" not in message and str(cut) in message and "damaged or truncated" in message
