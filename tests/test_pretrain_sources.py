"""Pretraining data sources: DeepZoom pyramids, the manifest (folders, stated resolutions,
sources), physical crop sizes, balancing, determinism; and tiled image-level evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_WSI, make_images
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.pretrain.data import sample_generator
from pathssl.pretrain.sources import (
    ImageItem,
    SlideItem,
    TileSource,
    plan_item,
    read_manifest,
    source_fractions,
)
from pathssl.slide.opening import open_slide

CORPUS = SHARED_WSI.parent / "corpus"


def write_dzi(image: np.ndarray, out: Path, tile_px: int = 64, overlap: int = 1) -> Path:
    """A DeepZoom pyramid of `image` (PNG tiles, lossless), laid out as the format says."""
    h, w = image.shape[:2]
    top = math.ceil(math.log2(max(w, h)))
    (out / "img.dzi").write_text(
        f'<?xml version="1.0"?><Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
        f'TileSize="{tile_px}" Overlap="{overlap}" Format="png"><Size Width="{w}" '
        f'Height="{h}"/></Image>'
    )
    level_img = Image.fromarray(image)
    for level in range(top, top - 3, -1):
        shrink = 2 ** (top - level)
        lw, lh = math.ceil(w / shrink), math.ceil(h / shrink)
        pixels = np.asarray(level_img.resize((lw, lh), Image.Resampling.BOX))
        folder = out / "img_files" / str(level)
        folder.mkdir(parents=True)
        for row in range(math.ceil(lh / tile_px)):
            for col in range(math.ceil(lw / tile_px)):
                x0, y0 = max(col * tile_px - overlap, 0), max(row * tile_px - overlap, 0)
                x1 = min((col + 1) * tile_px + overlap, lw)
                y1 = min((row + 1) * tile_px + overlap, lh)
                Image.fromarray(pixels[y0:y1, x0:x1]).save(folder / f"{col}_{row}.png")
    return out / "img.dzi"


@pytest.fixture(scope="module")
def cmu_pixels(cmu_slide: Path) -> np.ndarray:
    with open_slide(cmu_slide) as slide:
        return slide.read_region(600, 900, 0, 300, 230)


def test_deepzoom_reads_the_pixels_it_was_made_from(tmp_path: Path, cmu_pixels) -> None:
    dzi = write_dzi(cmu_pixels, tmp_path)
    with open_slide(dzi) as slide:
        assert slide.backend == "deepzoom"
        assert slide.dimensions == (300, 230)
        assert [lv.downsample for lv in slide.levels] == [1.0, 2.0, 4.0]
        assert slide.metadata_mpp is None  # DeepZoom states none
        # across tile seams (tiles of 64 px with 1 px overlap), and past the right edge
        np.testing.assert_array_equal(
            slide.read_region(50, 60, 0, 200, 150), cmu_pixels[60:210, 50:250]
        )
        edge = slide.read_region(280, 0, 0, 40, 20)
        np.testing.assert_array_equal(edge[:, :20], cmu_pixels[:20, 280:300])
        assert (edge[:, 20:] == 255).all()  # outside the image: background
        level1 = slide.read_region(0, 0, 1, 150, 115)
        assert level1.shape == (115, 150, 3)
        expected = np.asarray(Image.fromarray(cmu_pixels).resize((150, 115), Image.Resampling.BOX))
        np.testing.assert_array_equal(level1, expected)


def test_deepzoom_without_tiles_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.dzi").write_text(
        '<Image TileSize="254" Overlap="1" Format="jpeg"><Size Width="10" Height="10"/></Image>'
    )
    with pytest.raises(PathsslError, match="x_files' not found"):
        open_slide(tmp_path / "x.dzi")


def test_shared_cptac_deepzoom_matches_its_tiles() -> None:
    dzi = CORPUS / "cptac_he_dzi" / "slide.dzi"
    if not dzi.exists():
        pytest.skip(f"{dzi} not present (../shared/data is only on development and CI machines)")
    with open_slide(dzi) as slide:
        assert slide.dimensions == (5477, 5154) and len(slide.levels) == 4
        tile = np.asarray(Image.open(slide._folder / "13" / "4_4.jpeg").convert("RGB"))
        np.testing.assert_array_equal(
            slide.read_region(4 * 254, 4 * 254, 0, 254, 254), tile[1:255, 1:255]
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_images(root / "big40x", 3, 1000, (200, 100, 180))  # 250 um regions at 0.25 um/px
    make_images(root / "small40x", 40, 256, (120, 60, 160))  # 64 um tiles at 0.25 um/px
    make_images(root / "unknown", 2, 300, (180, 90, 150))
    (root / "manifest.csv").write_text(
        "# a comment line\n"
        "path,stain,mpp,source\n"
        "big40x,H&E,0.25,big\n"
        "small40x,H&E,0.25,small\n"
        "unknown,H&E,,unknown\n"
        f"{cmu_slide},H&E,,slide\n"
    )
    return root / "manifest.csv"


def test_manifest_rows_and_errors(corpus: Path, tmp_path: Path) -> None:
    rows = read_manifest(corpus)
    assert [r.source for r in rows] == ["big", "small", "unknown", "slide"]
    assert rows[0].mpp == 0.25 and rows[2].mpp is None
    bad = tmp_path / "bad.csv"
    bad.write_text("path,mpp\nx.png,fast\n")
    with pytest.raises(PathsslError, match="row 2: mpp 'fast' is not a number"):
        read_manifest(bad)
    bad.write_text("path,mpp\nx.png,352.8\n")
    with pytest.raises(PathsslError, match="no microscope's resolution"):
        read_manifest(bad)


def test_crops_cover_the_stated_field_of_view(corpus: Path, cmu_slide: Path) -> None:
    rows = {r.source: r for r in read_manifest(corpus)}
    big = plan_item(rows["big"], sorted(rows["big"].path.iterdir())[0], [1.0, 0.5, 2.0], 112)
    assert isinstance(big, ImageItem)
    assert big.crops == ((1.0, 448), (0.5, 224), (2.0, 896))  # 112 px x target / 0.25 um/px
    small = plan_item(rows["small"], sorted(rows["small"].path.iterdir())[0], [1.0, 0.5], 112)
    assert small.crops == ((0.5, 224),)  # a 64 um tile holds no 112 um field of view
    assert plan_item(rows["small"], sorted(rows["small"].path.iterdir())[0], [1.0], 112) is None
    # finer than the item's own resolution is never sampled (it would be upsampled)
    assert plan_item(rows["big"], sorted(rows["big"].path.iterdir())[0], [0.1], 112) is None
    slide = plan_item(rows["slide"], cmu_slide, [0.25, 1.0, 2.0], 64)
    assert isinstance(slide, SlideItem)
    assert [t for t, _ in slide.grids] == [1.0, 2.0]  # CMU is 0.499 um/px: 0.25 is skipped


def test_sources_are_balanced_and_samples_deterministic(corpus: Path) -> None:
    source = TileSource(corpus, [], [1.0, 0.5], 64)
    assert source.source_names == ["big", "slide", "small", "unknown"]
    weights = source.weights.numpy()
    assert abs(weights.sum() - 1) < 1e-9
    assert weights.max() <= 2 * np.median(weights) + 1e-9  # the cap
    assert any("resolution unknown" in line for line in source.describe())
    fractions = source_fractions(source, 4000)
    for name, w in zip(source.source_names, weights, strict=True):
        assert abs(fractions[name] - w) < 0.03
    a = source.sample(sample_generator(0, 7))
    b = source.sample(sample_generator(0, 7))
    assert a.shape == (3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, b)


def test_tiled_evaluation_averages_tiles_at_the_encoder_resolution(
    tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    from pathssl.evaluation.tiles import dataset_mpp, evaluate_bundle, tile_image

    tiles = tile_image(Image.new("RGB", (1000, 700)), 256)
    assert len(tiles) == 3 * 2 and all(t.size == (256, 256) for t in tiles)
    assert len(tile_image(Image.new("RGB", (100, 100)), 256)) == 1
    for cls, colour in (("a", (220, 120, 200)), ("b", (60, 60, 200))):
        make_images(tmp_path / "data" / cls, 6, 300, colour)
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"mpp": 0.5}))
    assert dataset_mpp(tmp_path / "data") == 0.5
    res = evaluate_bundle(tmp_path / "data", tiny_bundle_dir, fractions=(1.0,), seeds=(0, 1))
    # the tiny bundle reads 32 px at 2 um/px: 128 px of a 0.5 um/px image, 2 x 2 per image
    assert res["tiled_at_px"] == 128 and res["seeds"] == [0, 1]
    row = res["by_fraction"]["1"]["trained"]
    assert row["knn_balanced_accuracy"] == 1.0 and len(row["per_seed"]["knn"]) == 2


def test_labelled_benchmarks_are_laid_out_from_the_shared_data(tmp_path: Path) -> None:
    from pathssl.evaluation.dev_tasks import build_crc_val_32, build_monuseg_organ
    from pathssl.evaluation.tiles import dataset_mpp, load_split

    if not (CORPUS / "monuseg_he_40x" / "meta.csv").exists():
        pytest.skip(f"{CORPUS} not present (../shared/data is only on development and CI machines)")
    counts = build_monuseg_organ(SHARED_WSI.parent, tmp_path)
    train, test = load_split(tmp_path / "monuseg-organ")
    assert len(train.paths) == 30 and len(test.paths) == 12  # the two brain regions: no class
    assert "lung" in train.classes and "liver" not in train.classes
    assert counts["train/lung"] == 6 and "test/brain" not in counts
    assert not {p.name for p in train.paths} & {p.name for p in test.paths}
    assert dataset_mpp(tmp_path / "monuseg-organ") == 0.25
    pooled_train, pooled_test = load_split(tmp_path / "monuseg-organ-pooled", seed=1)
    assert len(pooled_train.paths) + len(pooled_test.paths) == 44
    build_crc_val_32(SHARED_WSI.parent, tmp_path)
    crc_train, crc_test = load_split(tmp_path / "crc-val-he-32")
    assert len(crc_train.paths) + len(crc_test.paths) == 32 and len(crc_train.classes) == 8
