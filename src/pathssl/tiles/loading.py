"""Parallel tile loading: one region read per block of neighbouring tiles, cut into tiles.

Blocks are read by threads of this process (the CPU default) or by DataLoader worker
processes (the GPU default); each thread and each process opens its own slide handle. Items
are blocks, always in the same order, and `iter_batches` re-batches their tiles into
fixed-size batches, so every batch is the same whatever the number of threads or processes
(and the features are byte-identical).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.slide.opening import open_slide
from pathssl.slide.reader import Slide
from pathssl.tiles.grid import TileGrid


@dataclass(frozen=True)
class TileBlock:
    indices: np.ndarray  # tile indices into the grid
    x_l0: int  # top-left of the region, level-0 pixels
    y_l0: int
    width: int  # region size at the grid's level
    height: int
    offsets: np.ndarray  # (k, 2) top-left (x, y) of each tile inside the region, level pixels


MAX_REGION_SIDE_PX = 4096  # a region of 4096^2 px is 64 MB as read, per reading thread


def plan_blocks(grid: TileGrid, downsample: float, block_tiles: int = 8) -> list[TileBlock]:
    """Group kept tiles into block_tiles x block_tiles neighbourhoods, row-major; fewer per
    side where tiles are read large, so a region stays within MAX_REGION_SIDE_PX."""
    block_tiles = max(1, min(block_tiles, MAX_REGION_SIDE_PX // grid.read_size_px))
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


def reduction_factor(grid: TileGrid, downsample: float) -> int | None:
    """The integer k when tiles are read at exactly k times their size and the grid step is a
    multiple of k: then a whole region is reduced once with a k x k box filter, which gives
    the same pixels as reducing each tile (as pyramid levels are made). None otherwise."""
    k, rest = divmod(grid.read_size_px, grid.tile_size_px)
    step = grid.stride_l0_px / downsample
    if rest or k < 2 or step != int(step) or int(step) % k:
        return None
    return k


def resize_tile(rgb: np.ndarray, size_px: int) -> np.ndarray:
    """Resize an RGB tile to size_px x size_px (antialiased bilinear); a no-op at that size."""
    if rgb.shape[0] == size_px and rgb.shape[1] == size_px:
        return rgb
    image = Image.fromarray(rgb).resize((size_px, size_px), Image.Resampling.BILINEAR)
    return np.asarray(image)


def cut_tiles(region: np.ndarray, offsets: np.ndarray, read_px: int, tile_px: int) -> np.ndarray:
    """(k, 3, tile_px, tile_px) uint8 tiles cut from a region at (x, y) offsets, each read_px
    wide and resized to tile_px."""
    tiles = np.empty((len(offsets), 3, tile_px, tile_px), np.uint8)
    for i, (x, y) in enumerate(offsets):
        tiles[i] = resize_tile(region[y : y + read_px, x : x + read_px], tile_px).transpose(2, 0, 1)
    return tiles


MIN_BLOCK_DENSITY = 0.5  # below this share of a region in tiles, read tile by tile


def read_block(slide: Slide, block: TileBlock, grid: TileGrid, factor: int | None) -> np.ndarray:
    """(k, 3, tile, tile) uint8 tiles of one block: from one region read, or tile by tile where
    the block's tiles are sparse (tissue edges, --max-tiles samples) and one region would
    decode mostly pixels that no tile uses."""
    read_px = grid.read_size_px
    if len(block.indices) * read_px**2 < MIN_BLOCK_DENSITY * block.width * block.height:
        origin = np.zeros((1, 2), np.int64)
        coords_l0 = grid.grid_rc[block.indices][:, ::-1] * grid.stride_l0_px
        return np.concatenate(
            [
                _read_tiles(
                    slide,
                    int(x),
                    int(y),
                    read_px,
                    read_px,
                    offsets=origin,
                    grid=grid,
                    factor=factor,
                )
                for x, y in coords_l0
            ]
        )
    return _read_tiles(
        slide,
        block.x_l0,
        block.y_l0,
        block.width,
        block.height,
        offsets=block.offsets,
        grid=grid,
        factor=factor,
    )


def _read_tiles(
    slide: Slide,
    x_l0: int,
    y_l0: int,
    width: int,
    height: int,
    *,
    offsets: np.ndarray,
    grid: TileGrid,
    factor: int | None,
) -> np.ndarray:
    """Tiles at `offsets` (level pixels) inside one region read."""
    if factor is None:
        region = slide.read_region(x_l0, y_l0, grid.level, width, height)
        return cut_tiles(region, offsets, grid.read_size_px, grid.tile_size_px)
    image = slide.read_region_image(x_l0, y_l0, grid.level, width, height)
    region = np.asarray(image.reduce(factor))
    return cut_tiles(region, offsets // factor, grid.tile_size_px, grid.tile_size_px)


class TileBlockDataset(torch.utils.data.Dataset):
    """Blocks of tiles of one slide; the slide is opened lazily in each reading thread or
    worker process, and `close` closes the handles this process opened."""

    def __init__(
        self, slide_path: Path, grid: TileGrid, blocks: list[TileBlock], downsample: float
    ) -> None:
        self.slide_path = Path(slide_path)
        self.grid = grid
        self.blocks = blocks
        self.factor = reduction_factor(grid, downsample)
        self._lock = threading.Lock()
        self._handles: list[Slide] = []
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.blocks)

    def _handle(self) -> Slide:
        """One slide handle per process and thread (not every backend is thread-safe)."""
        local = self._local
        if getattr(local, "slide", None) is None or local.pid != os.getpid():
            local.slide, local.pid = open_slide(self.slide_path), os.getpid()
            with self._lock:
                self._handles.append(local.slide)
        return local.slide

    def close(self) -> None:
        with self._lock:
            for slide in self._handles:
                slide.close()
            self._handles.clear()
        self._local = threading.local()

    def __getstate__(self) -> dict:  # worker processes open their own handles
        return {**self.__dict__, "_local": None, "_lock": None, "_handles": []}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local, self._lock = threading.local(), threading.Lock()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.blocks[i]
        tiles = read_block(self._handle(), block, self.grid, self.factor)
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


class ThreadedBlockReader:
    """Blocks read by a pool of threads in this process, yielded in order. OpenSlide, Pillow
    and numpy release the GIL while they decode, resize and copy, so threads overlap with
    each other, with no copies between processes (on 2 cores, 2 threads read faster than 2
    worker processes: measured in bench/embed_throughput.py).

    `phased`: blocks are read in turns of `threads x lookahead`, each turn whole before any
    of it is handed over and only when the consumer asks for more, so reading never runs
    beside an encoder that is working on the same cores (see `reads_in_phases`).
    `inspect(tiles, indices)`, if given, runs on each block in its reading thread (per-tile
    measures: the same values as on whole batches)."""

    def __init__(
        self,
        dataset: TileBlockDataset,
        threads: int,
        lookahead: int = 2,
        *,
        phased: bool = False,
        inspect: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> None:
        self.dataset, self.threads, self.lookahead = dataset, threads, lookahead
        self.phased, self.inspect = phased, inspect

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        tiles, indices = self.dataset[i]
        if self.inspect is not None:
            self.inspect(tiles.numpy(), indices.numpy())
        return tiles, indices

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        if self.threads <= 0:
            yield from (self._read(i) for i in range(n))
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="pathssl-read") as pool:
            if self.phased:
                yield from self._in_turns(pool, n)
            else:
                yield from self._ahead(pool, n)

    def _in_turns(self, pool: ThreadPoolExecutor, n: int) -> Iterator:
        """A whole turn of blocks is read, on every thread, before any of it is handed over."""
        turn = self.threads * self.lookahead
        for start in range(0, n, turn):
            futures = [pool.submit(self._read, i) for i in range(start, min(n, start + turn))]
            try:
                blocks = [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
            yield from blocks

    def _ahead(self, pool: ThreadPoolExecutor, n: int) -> Iterator:
        pending: deque = deque()
        try:
            for i in range(n):
                pending.append(pool.submit(self._read, i))
                if len(pending) > self.threads * self.lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def reads_in_phases(cuda: bool, num_workers: int) -> bool:
    """On a CPU the encoder already runs on every core: reading beside it makes both wait
    (the engine's threads meet at every layer, and a core lent to a reading thread stalls
    them all). There, reading threads take turns with the encoder, each on every core."""
    return not cuda and num_workers == 0


def default_num_workers(cuda: bool) -> int:
    """Reading processes: with a GPU, all but one core, overlapping with the GPU. On a CPU,
    none: reading threads do better there (see ThreadedBlockReader)."""
    cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1)) if cuda else 0


def default_read_threads() -> int:
    """Reading threads when there are no reading processes: one per core, up to 4. Where the
    encoder is the bottleneck they wait on a full queue; where reading is, they use every core."""
    return max(1, min(4, os.cpu_count() or 1))


def make_loader(
    dataset: TileBlockDataset,
    num_workers: int | None = None,
    cuda: bool = False,
    read_threads: int | None = None,
    inspect: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> torch.utils.data.DataLoader | ThreadedBlockReader:
    """Blocks in order: from worker processes (pinned memory for fast, non-blocking copies to
    a GPU), or, with num_workers 0, from reading threads (0: read inline) that take turns
    with the encoder and run `inspect` on each block (see `reads_in_phases`)."""
    workers = default_num_workers(cuda) if num_workers is None else num_workers
    if workers == 0:
        threads = default_read_threads() if read_threads is None else read_threads
        phased = reads_in_phases(cuda, workers)
        return ThreadedBlockReader(dataset, threads, phased=phased, inspect=inspect)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4,
    )


def iter_batches(
    loader: torch.utils.data.DataLoader | ThreadedBlockReader, batch_size: int
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
