"""One contract per pipeline stage, on the committed CMU slide: what each stage hands the
next, checked against an independent reading where there is one (OpenSlide's own API, the
tissue mask itself, numpy's mean).

slide opening -> resolution -> tissue -> tiling -> loading -> encoder -> aggregation -> outputs
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import openslide
import pytest
import torch

from pathssl.embed import EmbedOptions, OutputLayout, aggregation, embed_slide
from pathssl.encoder.bundle import normalise
from pathssl.encoder.inference import DeviceSettings, embed_batches, prepare_module
from pathssl.slide import SlideLevel, open_slide, resolve_mpp
from pathssl.tiles.grid import TilingSpec, plan_tiles
from pathssl.tiles.loading import TileBlockDataset, make_loader, plan_blocks, reduction_factor
from pathssl.tissue.detection import detect_tissue, render_thumbnail

WIDTH, HEIGHT, MPP = 2220, 2967, 0.499  # CMU-1-Small-Region.svs: one level, Aperio metadata


def _plan(slide_path: Path, spec: TilingSpec) -> SimpleNamespace:
    """The stages before any tile is read, in a fresh slide handle."""
    with open_slide(slide_path) as slide:
        resolution = resolve_mpp(slide)
        tissue = detect_tissue(render_thumbnail(slide, resolution.mpp))
        grid = plan_tiles(slide.levels, resolution.mpp, tissue, spec)
        downsample = slide.levels[grid.level].downsample
    return SimpleNamespace(resolution=resolution, tissue=tissue, grid=grid, downsample=downsample)


def _bundle_spec(bundle) -> TilingSpec:
    return TilingSpec(bundle.config.target_mpp, bundle.config.input_size_px)


def _read_all(slide_path: Path, grid, downsample: float) -> np.ndarray:
    """(N, 3, tile, tile) uint8: every tile of the grid through the pipeline's loader."""
    dataset = TileBlockDataset(slide_path, grid, plan_blocks(grid, downsample), downsample)
    out = np.zeros((len(grid), 3, grid.tile_size_px, grid.tile_size_px), np.uint8)
    seen = np.zeros(len(grid), int)
    try:
        for i in range(len(dataset)):
            tiles, indices = dataset[i]
            assert tiles.dtype == torch.uint8 and tiles.shape[1:] == out.shape[1:]
            out[indices.numpy()] = tiles.numpy()
            seen[indices.numpy()] += 1
    finally:
        dataset.close()
    assert (seen == 1).all()  # each tile read once
    return out


def _encode(slide_path: Path, bundle, grid, downsample: float) -> np.ndarray:
    """(N, D) features of every tile, by the pipeline's encoder stage on the CPU."""
    settings = DeviceSettings.auto("cpu")
    module = prepare_module(bundle, settings, engine="pytorch")
    dim = bundle.config.embedding_dim
    dataset = TileBlockDataset(slide_path, grid, plan_blocks(grid, downsample), downsample)
    features = np.full((len(grid), dim), np.nan, np.float32)

    def write(indices: np.ndarray, rows: np.ndarray) -> None:
        features[indices] = rows

    try:
        written = embed_batches(
            module,
            bundle,
            settings,
            make_loader(dataset, num_workers=0, read_threads=0),
            write=write,
            batch_size=16,
            label="CMU",
        )
    finally:
        dataset.close()
    assert written == len(grid)
    return features


@pytest.fixture(scope="module")
def planned(cmu_slide: Path, tiny_bundle) -> SimpleNamespace:
    return _plan(cmu_slide, _bundle_spec(tiny_bundle))


@pytest.fixture(scope="module")
def encoded(cmu_slide: Path, tiny_bundle, planned) -> np.ndarray:
    return _encode(cmu_slide, tiny_bundle, planned.grid, planned.downsample)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path, tiny_bundle) -> Path:
    """`embed_slide` with the outputs the last stages write (the rest: test_pipeline.py)."""
    out = tmp_path_factory.mktemp("contracts") / "cmu"
    layout = OutputLayout(patch_embeddings=None, feature_map=None, tissue_mask=None, preview=None)
    options = EmbedOptions(
        num_workers=0, batch_size=16, device="cpu", engine="pytorch", layout=layout
    )
    embed_slide(cmu_slide, out, tiny_bundle, options)
    return out


def test_slide_opening(cmu_slide: Path) -> None:
    """Levels, dimensions and resolution metadata as OpenSlide's own API reports them."""
    reference = openslide.OpenSlide(str(cmu_slide))
    with open_slide(cmu_slide) as slide:
        levels, dimensions, meta = slide.levels, slide.dimensions, slide.metadata_mpp
    assert levels == tuple(
        SlideLevel(w, h, d)
        for (w, h), d in zip(reference.level_dimensions, reference.level_downsamples, strict=True)
    )
    assert levels == (SlideLevel(WIDTH, HEIGHT, 1.0),)
    assert dimensions == reference.dimensions == (WIDTH, HEIGHT)
    assert meta is not None
    assert (meta.mpp_x, meta.mpp_y) == (
        float(reference.properties["openslide.mpp-x"]),
        float(reference.properties["openslide.mpp-y"]),
    )
    assert (meta.mpp_x, meta.mpp_y) == (MPP, MPP)


def test_resolution(cmu_slide: Path) -> None:
    """The level-0 resolution and the metadata field it came from."""
    with open_slide(cmu_slide) as slide:
        res = resolve_mpp(slide)
    assert res.mpp == pytest.approx(MPP)
    assert res.source == "openslide.mpp-x/y (aperio)"


def test_tissue(planned) -> None:
    """A boolean mask covering the slide at the mask's resolution; some tissue, some glass."""
    tissue, mpp = planned.tissue, planned.resolution.mpp
    assert tissue.mask.dtype == bool and tissue.mask.ndim == 2
    assert tissue.source == "detected-brightfield"
    sx, sy = tissue.level0_px_per_mask_px
    assert sx * mpp == pytest.approx(tissue.mpp) and sy * mpp == pytest.approx(tissue.mpp)
    rows, cols = tissue.mask.shape
    # the mask spans the slide to within one mask pixel (a last, partial one at each edge)
    assert 0 <= rows * tissue.mpp - HEIGHT * mpp < tissue.mpp
    assert 0 <= cols * tissue.mpp - WIDTH * mpp < tissue.mpp
    assert 0.0 < tissue.mask.mean() < 1.0


def test_tiling(cmu_slide: Path, tiny_bundle, planned) -> None:
    """Every tile inside the slide and on enough tissue (counted on the mask itself), in
    row-major order, no duplicates, and the same grid from a second, independent run."""
    grid, tissue = planned.grid, planned.tissue
    spec = _bundle_spec(tiny_bundle)
    assert len(grid) > 20
    coords, side_l0 = grid.coords_l0, grid.stride_l0_px
    assert coords.dtype == np.int64 and coords.shape == (len(grid), 2)
    assert (coords >= 0).all()
    assert (coords[:, 0] + side_l0 <= WIDTH).all() and (coords[:, 1] + side_l0 <= HEIGHT).all()
    scale = round(tissue.level0_px_per_mask_px[0])
    assert side_l0 % scale == 0  # tiles are whole mask pixels: count them exactly
    side = side_l0 // scale
    boxes = [(y // scale, x // scale) for x, y in coords]  # top-left, in mask pixels
    counted = np.array([tissue.mask[r : r + side, c : c + side].mean() for r, c in boxes])
    assert (counted >= spec.min_tissue_fraction).all()
    np.testing.assert_allclose(grid.tissue_fraction, counted)
    keys = coords[:, 1] * (WIDTH + 1) + coords[:, 0]
    assert (np.diff(keys) > 0).all()  # row-major, hence no duplicates
    assert len(np.unique(coords, axis=0)) == len(grid)
    again = _plan(cmu_slide, spec).grid
    np.testing.assert_array_equal(again.grid_rc, grid.grid_rc)
    np.testing.assert_array_equal(again.tissue_fraction, grid.tissue_fraction)


@pytest.mark.parametrize(
    ("target_mpp", "tile_px"), [(0.5, 224), (2.0, 32)], ids=["as-read", "box-reduced-4x4"]
)
def test_loading(cmu_slide: Path, target_mpp: float, tile_px: int) -> None:
    """Each tile, (3, tile, tile) uint8, holds OpenSlide's read of its region: as read where
    the slide is at the target resolution, else box-reduced as Pillow reduces it."""
    plan = _plan(cmu_slide, TilingSpec(target_mpp, tile_px))
    grid = plan.grid
    tiles = _read_all(cmu_slide, grid, plan.downsample)
    assert tiles.shape == (len(grid), 3, tile_px, tile_px) and tiles.dtype == np.uint8
    factor = reduction_factor(grid, plan.downsample)
    assert factor == (None if target_mpp == 0.5 else 4)
    reference = openslide.OpenSlide(str(cmu_slide))
    size = (grid.read_size_px, grid.read_size_px)
    for tile, (x, y) in zip(tiles, grid.coords_l0, strict=True):
        rgba = reference.read_region((int(x), int(y)), grid.level, size)
        assert np.asarray(rgba)[..., 3].min() == 255  # wholly inside the slide
        expected = rgba.convert("RGB")
        if factor:
            expected = expected.reduce(factor)
        np.testing.assert_array_equal(tile.transpose(1, 2, 0), np.asarray(expected))


def test_encoder(cmu_slide: Path, tiny_bundle, planned, encoded: np.ndarray) -> None:
    """Finite features of the bundle's width, one row per tile; the bundle's module applied
    to the normalised tile; the same features from a second run."""
    dim = tiny_bundle.config.embedding_dim
    assert dim > 0 and encoded.shape == (len(planned.grid), dim) and encoded.dtype == np.float32
    assert np.isfinite(encoded).all()
    assert encoded.std(axis=0).max() > 0  # tiles differ
    again = _encode(cmu_slide, tiny_bundle, planned.grid, planned.downsample)
    np.testing.assert_array_equal(again, encoded)
    tiles = _read_all(cmu_slide, planned.grid, planned.downsample)
    picks = [0, len(tiles) // 2, len(tiles) - 1]
    with torch.inference_mode():
        direct = tiny_bundle.module(normalise(torch.from_numpy(tiles[picks]), tiny_bundle.config))
    np.testing.assert_allclose(direct.numpy(), encoded[picks], rtol=1e-4, atol=1e-5)


def test_aggregation(embedded: Path, tiny_bundle_dir: Path, monkeypatch) -> None:
    """The slide embedding is the mean of the tile features (in float64, stored as float32),
    whatever the chunking of the features."""
    pool = aggregation.default_aggregator(tiny_bundle_dir)
    assert pool.name == "mean"  # the bundle has no trained slide encoder
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8)).astype(np.float32)
    expected = features.astype(np.float64).mean(axis=0).astype(np.float32)
    monkeypatch.setattr(aggregation, "CHUNK_TILES", 7)  # chunks of 7: 7 full and 1 partial
    np.testing.assert_array_equal(pool(features, np.zeros((50, 2), int)), expected)
    monkeypatch.undo()
    # and on the slide: the written embedding is the mean of the written features
    with h5py.File(embedded / "features.h5") as h5:
        written = h5["features"][:]
    slide_json = json.loads((embedded / "image-neural-representation.json").read_text())
    embedding = np.array(slide_json[0]["features"], np.float32)
    np.testing.assert_array_equal(
        embedding, written.astype(np.float64).mean(axis=0).astype(np.float32)
    )
    record = json.loads((embedded / "run.json").read_text())
    dim = written.shape[1]
    assert record["slide_embedding"] == {
        "aggregator": "mean",
        "weights_sha256": None,
        "dim": dim,
        "tiles": len(written),  # every tile: the mean takes them all
    }


def test_outputs(embedded: Path, tiny_bundle, planned, encoded: np.ndarray) -> None:
    """features.h5: the grid's coordinates, in its order, with the encoder's features."""
    grid = planned.grid
    with h5py.File(embedded / "features.h5") as h5:
        coords, features = h5["coords"][:], h5["features"][:]
        attrs = dict(h5.attrs)
    assert coords.dtype == np.int64
    np.testing.assert_array_equal(coords, grid.coords_l0)
    assert features.shape == (len(grid), tiny_bundle.config.embedding_dim)
    np.testing.assert_allclose(features, encoded, rtol=1e-4, atol=1e-5)
    assert attrs["patch_size_level0"] == grid.stride_l0_px
    assert attrs["mpp"] == pytest.approx(MPP) and attrs["patch_level"] == grid.level
