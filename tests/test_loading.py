"""Tile loading: block reads, box reductions, sparse blocks and reading threads must all give
exactly the pixels of reading each tile alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathssl.slide import open_slide, resolve_mpp
from pathssl.tiles import loading
from pathssl.tiles.grid import TilingSpec, plan_tiles
from pathssl.tiles.loading import (
    TileBlockDataset,
    iter_batches,
    make_loader,
    plan_blocks,
    reduction_factor,
    resize_tile,
)
from pathssl.tissue.detection import detect_tissue, render_thumbnail


def _grid(slide_path: Path, target_mpp: float, tile_px: int, max_tiles: int | None = None):
    with open_slide(slide_path) as slide:
        res = resolve_mpp(slide, None)
        tissue = detect_tissue(render_thumbnail(slide, res.mpp))
        spec = TilingSpec(target_mpp, tile_px, max_tiles=max_tiles)
        return plan_tiles(slide.levels, res.mpp, tissue, spec)


def _all_tiles(slide_path: Path, grid, block_tiles: int, threads: int, workers: int = 0):
    dataset = TileBlockDataset(slide_path, grid, plan_blocks(grid, 1.0, block_tiles), 1.0)
    out = np.zeros((len(grid), 3, grid.tile_size_px, grid.tile_size_px), np.uint8)
    seen = np.zeros(len(grid), bool)
    for tiles, idx in iter_batches(make_loader(dataset, workers, read_threads=threads), 7):
        out[idx.numpy()] = tiles.numpy()
        seen[idx.numpy()] = True
    dataset.close()
    assert seen.all()
    return out


def _alone(slide_path: Path, grid, i: int) -> np.ndarray:
    """Tile i read by itself: one read_region, then the reduction or resize."""
    x, y = (int(v) for v in grid.coords_l0[i])
    with open_slide(slide_path) as slide:
        rgb = slide.read_region(x, y, grid.level, grid.read_size_px, grid.read_size_px)
    factor = reduction_factor(grid, 1.0)
    if factor:
        rgb = np.asarray(Image.fromarray(rgb).reduce(factor))
    return resize_tile(rgb, grid.tile_size_px).transpose(2, 0, 1)


def test_box_reduction_per_region_equals_per_tile(cmu_slide: Path) -> None:
    grid = _grid(cmu_slide, 1.0, 64)  # 0.499 um/px: read 128 px, reduce 2 x 2
    assert grid.read_size_px == 128 and reduction_factor(grid, 1.0) == 2
    blocks_of_8 = _all_tiles(cmu_slide, grid, 8, threads=0)
    for i in (0, len(grid) // 2, len(grid) - 1):
        np.testing.assert_array_equal(blocks_of_8[i], _alone(cmu_slide, grid, i))
    # the same pixels from single-tile blocks, reading threads or worker processes
    np.testing.assert_array_equal(blocks_of_8, _all_tiles(cmu_slide, grid, 1, threads=3))
    np.testing.assert_array_equal(blocks_of_8, _all_tiles(cmu_slide, grid, 8, 0, workers=2))


def test_non_integer_factor_resizes_each_tile(cmu_slide: Path) -> None:
    grid = _grid(cmu_slide, 0.8, 64)  # read round(64 * 0.8 / 0.499) = 103 px
    assert grid.read_size_px == 103 and reduction_factor(grid, 1.0) is None
    tiles = _all_tiles(cmu_slide, grid, 8, threads=2)
    for i in (0, len(grid) - 1):
        np.testing.assert_array_equal(tiles[i], _alone(cmu_slide, grid, i))


def test_sparse_blocks_are_read_tile_by_tile(cmu_slide: Path, monkeypatch) -> None:
    grid = _grid(cmu_slide, 1.0, 64, max_tiles=9)  # a spread-out sample of the tissue
    blocks = plan_blocks(grid, 1.0)
    region_px = sum(b.width * b.height for b in blocks)
    assert region_px > 2 * len(grid) * grid.read_size_px**2  # one region would waste reads
    read_sizes = []
    real = loading._read_tiles

    def recording(slide, x_l0, y_l0, width, height, **rest):
        read_sizes.append((width, height))
        return real(slide, x_l0, y_l0, width, height, **rest)

    monkeypatch.setattr(loading, "_read_tiles", recording)
    tiles = _all_tiles(cmu_slide, grid, 8, threads=2)
    one_tile = (grid.read_size_px, grid.read_size_px)
    expected = []
    for b in blocks:
        sparse = (
            len(b.indices) * grid.read_size_px**2 < loading.MIN_BLOCK_DENSITY * b.width * b.height
        )
        expected += [one_tile] * len(b.indices) if sparse else [(b.width, b.height)]
    assert sum(size == one_tile for size in expected) > len(blocks)  # sparse blocks exist
    assert sorted(read_sizes) == sorted(expected)  # sparse blocks read one tile at a time
    for i in range(len(grid)):
        np.testing.assert_array_equal(tiles[i], _alone(cmu_slide, grid, i))


def test_reading_error_from_a_thread_is_one_line(cmu_slide: Path, tmp_path: Path) -> None:
    from pathssl.errors import SlideReadError

    data = bytearray(cmu_slide.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200_000] = bytes(200_000)
    broken = tmp_path / "broken.svs"
    broken.write_bytes(bytes(data))
    grid = _grid(cmu_slide, 1.0, 64)
    with pytest.raises(SlideReadError, match="cannot read region") as err:
        _all_tiles(broken, grid, 8, threads=2)
    assert "\n" not in str(err.value) and str(broken) in str(err.value)


class _Blocks:
    """A stand-in dataset of k blocks that records, for each read, whether the consumer was
    working at the time (the concurrency property under test, not pixels)."""

    def __init__(self, k: int) -> None:
        self.k, self.consumer_busy, self.reads_while_busy = k, False, 0

    def __len__(self) -> int:
        return self.k

    def __getitem__(self, i: int):
        import time

        import torch

        time.sleep(0.005)
        self.reads_while_busy += self.consumer_busy
        return torch.full((3, 3, 4, 4), i, dtype=torch.uint8), torch.arange(3 * i, 3 * i + 3)


@pytest.mark.parametrize("phased", [True, False])
def test_phased_reading_never_runs_beside_the_consumer(phased: bool) -> None:
    import time

    blocks = _Blocks(12)
    seen = []
    reader = loading.ThreadedBlockReader(blocks, threads=2, phased=phased)
    for tiles, idx in reader:
        blocks.consumer_busy = True
        time.sleep(0.02)  # the encoder's turn
        blocks.consumer_busy = False
        seen.append(int(tiles[0, 0, 0, 0]))
        assert idx.tolist() == [3 * seen[-1], 3 * seen[-1] + 1, 3 * seen[-1] + 2]
    assert seen == list(range(12))  # every block, in order, either way
    if phased:
        assert blocks.reads_while_busy == 0
    else:  # reading ahead does overlap: the check above can fail
        assert blocks.reads_while_busy > 0


def test_cpu_reads_in_phases_and_gpu_overlaps() -> None:
    assert loading.reads_in_phases(cuda=False, num_workers=0)
    assert not loading.reads_in_phases(cuda=True, num_workers=0)
    assert not loading.reads_in_phases(cuda=False, num_workers=2)


def test_quality_measured_in_reading_threads_equals_per_batch(cmu_slide: Path) -> None:
    from pathssl.tissue.tile_qc import TileQC

    grid = _grid(cmu_slide, 1.0, 112)
    dataset = TileBlockDataset(cmu_slide, grid, plan_blocks(grid, 1.0, 4), 1.0)
    in_threads, per_batch = TileQC.empty(len(grid)), TileQC.empty(len(grid))
    loader = make_loader(dataset, 0, read_threads=2, inspect=in_threads.measure)
    assert loader.phased
    for tiles, idx in iter_batches(loader, 7):
        per_batch.measure(tiles.numpy(), idx.numpy())
    dataset.close()
    assert (per_batch.focus > 0).all()
    np.testing.assert_array_equal(in_threads.focus, per_batch.focus)
    np.testing.assert_array_equal(in_threads.ink_fraction, per_batch.ink_fraction)
