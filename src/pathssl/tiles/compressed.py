"""Blocks of tiles decoded from a JPEG-tiled level's compressed bytes on a device (the GPU's
JPEG decoder on CUDA), cut and resized there: the loader for GPU runs on SVS and pyramidal
TIFFs, so that decoding stops being the CPU's bottleneck. Yields what TileBlockDataset yields
through a DataLoader, (uint8 tiles (k, 3, t, t), tile indices), with the tiles on the device.

Region origins in level pixels are level-0 coordinates over the level's downsample, rounded.
Where that is not a whole number (a level whose downsample is not exact, as panimg's 2.0003),
OpenSlide shifts the level's pixels by the fraction and interpolates; here they stay on their
own grid, so the two differ by that sub-pixel shift (mean 1.9 grey levels at level 1 and 5.6
at level 2 of the test TIFF); they are equal at level 0 and on Aperio's levels. Resizing is
on the device: a k x k box mean where tiles are read at exactly k times their size (as the
CPU loader's region reduction), else antialiased bilinear (the CPU loader's Pillow bilinear,
to within 1 grey level).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from pathssl.slide.jpeg_tiles import JpegTileLevel, read_region
from pathssl.tiles.grid import TileGrid
from pathssl.tiles.loading import TileBlock, reduction_factor


class CompressedTileReader:
    def __init__(
        self,
        level: JpegTileLevel,
        grid: TileGrid,
        blocks: list[TileBlock],
        downsample: float,
        device: str | torch.device,
    ) -> None:
        self.level, self.grid, self.blocks = level, grid, blocks
        self.downsample, self.device = downsample, torch.device(device)
        self.factor = reduction_factor(grid, downsample)

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        read_px, tile_px = self.grid.read_size_px, self.grid.tile_size_px
        for block in self.blocks:
            x = round(block.x_l0 / self.downsample)
            y = round(block.y_l0 / self.downsample)
            region = read_region(self.level, x, y, block.width, block.height, device=self.device)
            tiles = torch.stack(
                [region[:, oy : oy + read_px, ox : ox + read_px] for ox, oy in block.offsets]
            )
            yield self._resize(tiles, read_px, tile_px), torch.from_numpy(block.indices).long()

    def _resize(self, tiles: torch.Tensor, read_px: int, tile_px: int) -> torch.Tensor:
        if read_px == tile_px:
            return tiles
        if self.factor is not None:  # the rounded k x k block mean, as Pillow's reduce
            return (F.avg_pool2d(tiles.float(), self.factor) + 0.5).floor().to(torch.uint8)
        out = F.interpolate(tiles.float(), size=(tile_px, tile_px), mode="bilinear", antialias=True)
        return out.round().clamp(0, 255).to(torch.uint8)


# Largest mean difference, in grey levels, between the device's and the CPU's decoding of the
# first block before the device decoder is trusted (JPEG decoders differ by rounding only).
SELF_CHECK_MAX_MEAN = 2.0


def checked_reader(
    level: JpegTileLevel,
    grid: TileGrid,
    blocks: list[TileBlock],
    downsample: float,
    device: torch.device,
) -> tuple[CompressedTileReader | None, str]:
    """The device reader if it decodes the slide's first block as the CPU does (a GPU decoder
    that ignored, say, Aperio's RGB colour space would not), else None; and why, in words."""
    if not blocks:
        return None, "no tiles"
    first = blocks[:1]
    on_device = next(iter(CompressedTileReader(level, grid, first, downsample, device)))[0]
    on_cpu = next(iter(CompressedTileReader(level, grid, first, downsample, "cpu")))[0]
    mean = float((on_device.cpu().int() - on_cpu.int()).abs().float().mean())
    if mean > SELF_CHECK_MAX_MEAN:
        return None, f"the {device} JPEG decoder differs from the CPU's by {mean:.1f} grey levels"
    return CompressedTileReader(level, grid, blocks, downsample, device), "ok"
