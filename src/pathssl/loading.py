"""Parallel tile loading: one region read per block of neighbouring tiles, cut into tiles.

Each DataLoader worker opens its own slide handle. Items are blocks (always in the same
order), and `iter_batches` re-batches their tiles into fixed-size batches, so every batch is
the same whatever the number of workers (and the features are byte-identical).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.slide.reader import Slide, open_slide
from pathssl.tiling import TileGrid


@dataclass(frozen=True)
class TileBlock:
    indices: np.ndarray  # tile indices into the grid
    x_l0: int  # top-left of the region, level-0 pixels
    y_l0: int
    width: int  # region size at the grid's level
    height: int
    offsets: np.ndarray  # (k, 2) top-left (x, y) of each tile inside the region, level pixels


def plan_blocks(grid: TileGrid, downsample: float, block_tiles: int = 8) -> list[TileBlock]:
    """Group kept tiles into block_tiles x block_tiles neighbourhoods, row-major."""
    rc = grid.grid_rc
    keys = (rc[:, 0] // block_tiles) * (grid.grid_shape[1] // block_tiles + 1) + (
        rc[:, 1] // block_tiles
    )
    order = np.argsort(keys, kind="stable")
    step = grid.stride_l0_px / downsample  # grid step in level pixels
    blocks = []
    for group in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
        r0, c0 = rc[group].min(axis=0)
        r1, c1 = rc[group].max(axis=0)
        offsets = np.stack(
            [np.round((rc[group, 1] - c0) * step), np.round((rc[group, 0] - r0) * step)], axis=1
        ).astype(np.int64)
        blocks.append(
            TileBlock(
                indices=group,
                x_l0=int(c0 * grid.stride_l0_px),
                y_l0=int(r0 * grid.stride_l0_px),
                width=round((c1 - c0) * step) + grid.read_size_px,
                height=round((r1 - r0) * step) + grid.read_size_px,
                offsets=offsets,
            )
        )
    return blocks


def resize_tile(rgb: np.ndarray, size_px: int) -> np.ndarray:
    """Resize an RGB tile to size_px x size_px (antialiased bilinear); a no-op at that size."""
    if rgb.shape[0] == size_px and rgb.shape[1] == size_px:
        return rgb
    image = Image.fromarray(rgb).resize((size_px, size_px), Image.Resampling.BILINEAR)
    return np.asarray(image)


def cut_tiles(region: np.ndarray, block: TileBlock, grid: TileGrid) -> np.ndarray:
    """(k, 3, tile, tile) uint8 tiles cut from a block's region."""
    size = grid.read_size_px
    tiles = np.empty((len(block.indices), 3, grid.tile_size_px, grid.tile_size_px), np.uint8)
    for i, (x, y) in enumerate(block.offsets):
        tile = resize_tile(region[y : y + size, x : x + size], grid.tile_size_px)
        tiles[i] = tile.transpose(2, 0, 1)
    return tiles


class TileBlockDataset(torch.utils.data.Dataset):
    """Blocks of tiles of one slide; the slide is opened lazily in each worker."""

    def __init__(self, slide_path: Path, grid: TileGrid, blocks: list[TileBlock]) -> None:
        self.slide_path = Path(slide_path)
        self.grid = grid
        self.blocks = blocks
        self._slide: Slide | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.blocks)

    def _handle(self) -> Slide:
        if self._slide is None or self._pid != os.getpid():
            self._slide = open_slide(self.slide_path)
            self._pid = os.getpid()
        return self._slide

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.blocks[i]
        region = self._handle().read_region(
            block.x_l0, block.y_l0, self.grid.level, block.width, block.height
        )
        tiles = cut_tiles(region, block, self.grid)
        return torch.from_numpy(tiles), torch.from_numpy(block.indices.astype(np.int64))


def _reraise_cleanly(loader: torch.utils.data.DataLoader) -> Iterator:
    """A worker's error comes back with the worker's traceback in its message; keep the
    original one-line message so the user sees the file and the fix, not a traceback."""
    try:
        yield from loader
    except PathsslError as exc:
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(exc).__name__}: "
        raise type(exc)(last.split(prefix, 1)[1] if prefix in last else last) from None


def default_num_workers(cuda: bool) -> int:
    """With a GPU, read in all but one core, overlapping with the GPU. On a CPU the encoder
    already uses every core, so a reading process has no idle core to use (on 2 cores it made
    no measurable difference); small machines read inline and spare the process."""
    cores = os.cpu_count() or 1
    if cuda:
        return max(0, min(8, cores - 1))
    return 0 if cores <= 4 else min(4, cores // 4)


def make_loader(
    dataset: TileBlockDataset, num_workers: int | None = None, cuda: bool = False
) -> torch.utils.data.DataLoader:
    """Blocks in order; pinned memory for fast, non-blocking copies to a GPU."""
    workers = default_num_workers(cuda) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers > 0 else None,
    )


def iter_batches(
    loader: torch.utils.data.DataLoader, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed-size batches of (uint8 tiles, tile indices) from a loader of blocks."""
    tiles_buf: list[torch.Tensor] = []
    index_buf: list[torch.Tensor] = []
    held = 0
    for tiles, indices in _reraise_cleanly(loader):
        tiles_buf.append(tiles)
        index_buf.append(indices)
        held += len(indices)
        while held >= batch_size:
            all_tiles, all_idx = torch.cat(tiles_buf), torch.cat(index_buf)
            yield all_tiles[:batch_size], all_idx[:batch_size]
            tiles_buf, index_buf = [all_tiles[batch_size:]], [all_idx[batch_size:]]
            held -= batch_size
    if held:
        yield torch.cat(tiles_buf), torch.cat(index_buf)
