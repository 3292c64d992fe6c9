"""Regions of JPEG-tiled TIFF levels (Aperio SVS, generic and Grand-Challenge pyramidal TIFFs)
decoded from the compressed tile bytes, in batches, on a chosen device: the GPU's JPEG decoder
(torchvision.io.decode_jpeg on CUDA) when there is one, the CPU otherwise, with the same code.

tifffile gives each tile's offset and byte count and the level's shared JPEG tables (TIFF tag
347): a tile's stream is the tables without their end marker followed by the tile's own bytes
without their start marker. Levels that are not tiled JPEG (NDPI's strip JPEGs, LZW, JPEG
2000, ...) are not offered: the caller reads them with OpenSlide. Neither is NDPI: its JPEG
tiles are restart intervals of one stream, not standalone JPEGs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pathssl.errors import SlideReadError

JPEG = 7  # TIFF compression
RGB = 2  # TIFF photometric interpretation
# An Adobe APP14 segment with transform 0: tells a JPEG decoder that the 3 components are RGB,
# as OpenSlide tells libjpeg for photometric-RGB TIFFs (Aperio), instead of guessing YCbCr.
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
TILE_BACKGROUND = 255  # OpenSlide's transparent areas become white in this project


@dataclass(frozen=True)
class JpegTileLevel:
    path: Path
    page: int  # index of the TIFF page
    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: np.ndarray = field(repr=False)  # (rows * cols,) byte offset of each tile
    byte_counts: np.ndarray = field(repr=False)  # 0 for a tile that is absent (sparse)
    tables: bytes | None = field(repr=False)  # JPEGTables, shared by the level's tiles
    rgb_encoded: bool = False  # photometric RGB: the JPEG holds RGB, not YCbCr (Aperio)

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.height / self.tile_height), math.ceil(self.width / self.tile_width)


def jpeg_tile_levels(path: Path, level_sizes: list[tuple[int, int]]) -> list[JpegTileLevel]:
    """For the slide's levels (width, height, as its reader lists them), from level 0 on: the
    TIFF page of that size if it is tiled, 3-channel, interleaved 8-bit JPEG; the list stops at
    the first level that is not (empty if level 0 is not)."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # not a TIFF: OpenSlide's other formats
        return []
    with tif:
        if tif.is_ndpi:  # its "tiles" are restart intervals of one JPEG: not standalone streams
            return []
        pages = {(pg.imagewidth, pg.imagelength): pg for pg in reversed(tif.pages)}
        levels = []
        for size in level_sizes:
            page = pages.get(tuple(size))
            if page is None or not (
                page.is_tiled
                and page.compression == JPEG
                and page.samplesperpixel == 3
                and page.planarconfig == 1
                and page.bitspersample == 8
            ):
                break
            tables = page.tags.get(347)
            levels.append(
                JpegTileLevel(
                    Path(path),
                    page.index,
                    page.imagewidth,
                    page.imagelength,
                    page.tilewidth,
                    page.tilelength,
                    np.asarray(page.dataoffsets, np.int64),
                    np.asarray(page.databytecounts, np.int64),
                    bytes(tables.value) if tables is not None else None,
                    rgb_encoded=page.photometric == RGB,
                )
            )
    return levels


def tile_streams(level: JpegTileLevel, indices: list[int]) -> list[bytes | None]:
    """Complete JPEG streams of the given tiles (None for absent tiles), read in file order."""
    out: list[bytes | None] = [None] * len(indices)
    head = level.tables[:-2] if level.tables else b""  # without EOI
    if level.rgb_encoded:
        head = b"\xff\xd8" + ADOBE_RGB + (head[2:] if head else b"")
    with open(level.path, "rb") as fh:
        for k in np.argsort(level.offsets[indices], kind="stable"):
            i = indices[k]
            count = int(level.byte_counts[i])
            if count == 0:
                continue
            fh.seek(int(level.offsets[i]))
            data = fh.read(count)
            if len(data) < count:  # the tile lies past the end of the file
                row, col = divmod(i, level.grid[1])
                raise damaged_tile(level, row, col, EOFError(f"{len(data)} of {count} bytes"))
            out[k] = head + data[2:] if head else data  # the tile's own SOI dropped
    return out


Placement = tuple[int, int, tuple[slice, slice], tuple[slice, slice]]


def tile_placements(
    level: JpegTileLevel, x: int, y: int, width: int, height: int
) -> list[Placement]:
    """The tiles that overlap the region at level pixel (x, y): (row, col, where in the region,
    which of the tile's pixels), rows and columns as slices. A tile of the last row or column
    may extend past the image: only its pixels inside the image count."""
    tw, th = level.tile_width, level.tile_height
    rows, cols = level.grid
    out = []
    for r in range(max(0, y // th), min(rows, -(-(y + height) // th))):
        for c in range(max(0, x // tw), min(cols, -(-(x + width) // tw))):
            ty0, tx0 = r * th, c * tw
            sy0, sx0 = max(ty0, y), max(tx0, x)
            sy1 = min(ty0 + th, level.height, y + height)
            sx1 = min(tx0 + tw, level.width, x + width)
            if sy1 > sy0 and sx1 > sx0:
                dst = (slice(sy0 - y, sy1 - y), slice(sx0 - x, sx1 - x))
                src = (slice(sy0 - ty0, sy1 - ty0), slice(sx0 - tx0, sx1 - tx0))
                out.append((r, c, dst, src))
    return out


def read_region(
    level: JpegTileLevel, x: int, y: int, width: int, height: int, *, device: str | torch.device
) -> torch.Tensor:
    """(3, height, width) uint8 on `device`: the region at (x, y) of this level, white outside
    the image and where tiles are absent."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out = torch.full((3, height, width), TILE_BACKGROUND, dtype=torch.uint8, device=device)
    placements = tile_placements(level, x, y, width, height)
    cols = level.grid[1]
    streams = tile_streams(level, [r * cols + c for r, c, _, _ in placements])
    present = [(p, s) for p, s in zip(placements, streams, strict=True) if s is not None]
    if not present:
        return out
    data = [torch.frombuffer(bytearray(s), dtype=torch.uint8) for _, s in present]
    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; it still decodes
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            tiles = [(r, c) for (r, c, _, _), _ in present]
            raise _first_damaged_tile(level, tiles, data, device, exc) from exc
    for ((_, _, (dy, dx), (sy, sx)), _), tile in zip(present, decoded, strict=True):
        out[:, dy, dx] = tile[:, sy, sx]
    return out


def _first_damaged_tile(
    level: JpegTileLevel,
    tiles: list[tuple[int, int]],
    data: list[torch.Tensor],
    device: str | torch.device,
    batch_error: BaseException,
) -> SlideReadError:
    """The error for a batch that failed to decode, naming the tile that fails alone (the
    batch's error does not say which); the batch's first tile where none fails alone."""
    from torchvision.io import ImageReadMode, decode_jpeg

    for (row, col), stream in zip(tiles, data, strict=True):
        try:
            decode_jpeg(stream, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            return damaged_tile(level, row, col, exc)
    return damaged_tile(level, *tiles[0], batch_error)


def damaged_tile(level: JpegTileLevel, row: int, col: int, exc: BaseException) -> SlideReadError:
    detail = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return SlideReadError(
        f"{level.path}: cannot read region x={col * level.tile_width} "
        f"y={row * level.tile_height} of TIFF page {level.page}: a JPEG tile does not decode "
        f"({detail}); the file is damaged or truncated: copy or export it again"
    )


DCT_SCALE = 8  # JPEG decodes at 1/8 scale from each 8 x 8 block's DC coefficient alone
STREAM_CHUNK_TILES = 1024  # tiles read from the file at a time


def reduced_level(level: JpegTileLevel, factor: int) -> np.ndarray | None:
    """(rows, cols, 3) uint8: the level box-reduced by `factor`, decoding every tile at 1/8
    scale (each pixel the mean of an 8 x 8 block, from its DC coefficient: no inverse DCT) and
    absent tiles (sparse TIFFs) not at all, white. For thumbnails of large slides without a
    usable pyramid. None where `factor` is not a multiple of 8 that divides the tiles."""
    from io import BytesIO

    from PIL import Image

    tw, th = level.tile_width, level.tile_height
    if factor < DCT_SCALE or factor % DCT_SCALE or tw % factor or th % factor:
        return None
    rows, cols = level.grid
    out_h, out_w = math.ceil(level.height / factor), math.ceil(level.width / factor)
    out = np.full((out_h, out_w, 3), TILE_BACKGROUND, np.uint8)
    ctw, cth, extra = tw // factor, th // factor, factor // DCT_SCALE
    present = [i for i in range(rows * cols) if level.byte_counts[i] > 0]
    for start in range(0, len(present), STREAM_CHUNK_TILES):
        chunk = present[start : start + STREAM_CHUNK_TILES]
        for i, stream in zip(chunk, tile_streams(level, chunk), strict=True):
            r, c = divmod(i, cols)
            try:
                with Image.open(BytesIO(stream)) as im:
                    im.draft("RGB", (tw // DCT_SCALE, th // DCT_SCALE))
                    small = im.convert("RGB")
                    if extra > 1:
                        small = small.reduce(extra)
                    pixels = np.asarray(small)
            except (OSError, ValueError, SyntaxError) as exc:
                raise damaged_tile(level, r, c, exc) from exc
            y0, x0 = r * cth, c * ctw
            h, w = min(cth, out_h - y0), min(ctw, out_w - x0)
            out[y0 : y0 + h, x0 : x0 + w] = pixels[:h, :w]
    return out
