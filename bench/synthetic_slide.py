"""Large synthetic pyramidal JPEG TIFFs assembled from real tissue images, for benchmarks.

    python bench/synthetic_slide.py OUT.tif --width 100000 --height 80000 --mpp 0.25

Tissue is a fixed set of ellipses (about a third of the area) filled with textures cut from
real H&E images in ../shared/data (or tests/data's CMU slide when that is absent); glass is
white. Every level is rendered tile by tile and written by tifffile as a generic tiled TIFF
with resolution tags: nothing the size of a level is ever in memory. Generated at run time,
never committed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TILE = 512
BLOCK = 2048  # level-0 px: one texture source per block, continuous within it


def load_textures(shared: Path) -> list[np.ndarray]:
    paths = [
        shared / "patches" / "tiatoolbox_target_image.png",
        shared / "patches" / "torchstain_target.png",
        shared / "patches" / "torchstain_source.png",
        *sorted((shared / "patches" / "histolab_fixture_tiles").glob("tissue-level*.png")),
    ]
    textures = []
    for p in paths:
        if p.exists():
            with Image.open(p) as im:
                textures.append(np.asarray(im.convert("RGB")))
    if not textures:  # the committed CC0 slide, cut into regions
        import openslide

        with openslide.OpenSlide(str(ROOT / "tests" / "data" / "CMU-1-Small-Region.svs")) as s:
            region = np.asarray(s.read_region((0, 900), 0, (2220, 1200)).convert("RGB"))
        textures = [region[:, :1100], region[:, 1100:]]
    return textures


def ellipses(seed: int, n: int = 7) -> np.ndarray:
    """(n, 5): centre x, centre y, semi-axes a, b (fractions of the slide), angle."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(0.2, 0.8, n),
            rng.uniform(0.2, 0.8, n),
            rng.uniform(0.08, 0.2, n),
            rng.uniform(0.08, 0.2, n),
            rng.uniform(0, math.pi, n),
        ]
    )


def tissue_mask(xs: np.ndarray, ys: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """xs, ys: fractions of width and height on a grid; True inside any ellipse."""
    inside = np.zeros(np.broadcast(xs, ys).shape, bool)
    for cx, cy, a, b, t in shapes:
        dx, dy = xs - cx, ys - cy
        u = dx * math.cos(t) + dy * math.sin(t)
        v = -dx * math.sin(t) + dy * math.cos(t)
        inside |= (u / a) ** 2 + (v / b) ** 2 <= 1
    return inside


MASK_STEP = 16  # tissue outline evaluated every 16 px of a tile, then repeated


def texture_canvas(tex: np.ndarray) -> np.ndarray:
    """The texture repeated to at least (tex + TILE) per side, so any tile is one slice."""
    th, tw = tex.shape[:2]
    reps = (math.ceil((th + TILE) / th), math.ceil((tw + TILE) / tw), 1)
    return np.tile(tex, reps)


def level_tiles(
    width: int,
    height: int,
    down: int,
    canvases: list[list[np.ndarray]],
    shapes: np.ndarray,
    level: int,
    seed: int,
):
    """Tiles of the level with downsample `down`; canvases[.][level] is the texture at that
    downsample."""
    lw, lh = math.ceil(width / down), math.ceil(height / down)
    white = np.full((TILE, TILE, 3), 255, np.uint8)
    offs = np.arange(0, TILE, MASK_STEP) + MASK_STEP / 2
    for ty in range(0, lh, TILE):
        for tx in range(0, lw, TILE):
            ys = (ty + offs)[:, None] * down
            xs = (tx + offs)[None, :] * down
            coarse = tissue_mask(xs / width, ys / height, shapes) & (xs < width) & (ys < height)
            if not coarse.any():
                yield white
                continue
            inside = np.repeat(np.repeat(coarse, MASK_STEP, 0), MASK_STEP, 1)
            block = (ty * down // BLOCK) * 7919 + (tx * down // BLOCK) * 104729 + seed
            canvas = canvases[block % len(canvases)][level]
            th, tw = canvases[block % len(canvases)][0].shape[:2]  # period of the texture
            period_y = max(1, math.ceil(th / down))
            period_x = max(1, math.ceil(tw / down))
            y0, x0 = ty % period_y, tx % period_x
            tex = canvas[y0 : y0 + TILE, x0 : x0 + TILE]
            if tex.shape[:2] != (TILE, TILE):
                tex = np.pad(
                    tex, ((0, TILE - tex.shape[0]), (0, TILE - tex.shape[1]), (0, 0)), mode="wrap"
                )
            yield np.where(inside[..., None], tex, white)


def write_synthetic_slide(
    path: Path,
    width: int,
    height: int,
    mpp: float = 0.25,
    seed: int = 0,
    shared: Path = ROOT.parent / "shared" / "data",
    quality: int = 80,
    level_factor: int = 2,
    max_levels: int | None = None,
) -> Path:
    """level_factor 2 writes every power-of-two level; 4 writes levels 1, 4, 16, ... as
    Aperio scanners do (then 0.5 um/px must be read from level 0 and resized). max_levels 1
    writes a flat slide without a pyramid."""
    import tifffile

    base = load_textures(shared)
    n_levels = max(1, math.ceil(math.log(max(width, height) / TILE, level_factor)) + 1)
    n_levels = min(n_levels, max_levels or n_levels)
    canvases = []
    for tex in base:
        pyramid = [tex]
        for _ in range(1, n_levels):
            prev = pyramid[-1]
            size = (
                max(8, prev.shape[1] // level_factor),
                max(8, prev.shape[0] // level_factor),
            )
            pyramid.append(np.asarray(Image.fromarray(prev).resize(size, Image.Resampling.BOX)))
        canvases.append([texture_canvas(t) for t in pyramid])
    shapes = ellipses(seed)
    encode = _jpeg_encoder()
    tmp = path.with_name(f".{path.name}.tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for level in range(n_levels):
            down = level_factor**level
            lw, lh = math.ceil(width / down), math.ceil(height / down)
            px_per_cm = 1e4 / (mpp * down)
            tiles = level_tiles(width, height, down, canvases, shapes, level, seed)
            tif.write(
                tiles if encode is None else (encode(t, quality) for t in tiles),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                **(
                    {"photometric": "rgb", "compressionargs": {"level": quality}}
                    if encode is None
                    else {"photometric": "ycbcr", "subsampling": (1, 1)}
                ),
                compression="jpeg",
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                metadata=None,
            )
    tmp.replace(path)
    return path


def _jpeg_encoder():
    """None where imagecodecs encodes JPEG inside tifffile (RGB-coded, as Aperio writes);
    else Pillow pre-encodes every tile (YCbCr 4:4:4), e.g. on a GPU machine without it."""
    try:
        import imagecodecs  # noqa: F401

        return None
    except ImportError:
        import io

        import tifffile

        # tifffile looks a JPEG encoder up even for pre-encoded tiles; none is ever called
        tifffile.TIFF.COMPRESSORS._codecs.setdefault(7, None)

        def encode(tile: np.ndarray, quality: int) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(tile).save(buf, "JPEG", quality=quality, subsampling=0)
            return buf.getvalue()

        return encode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("output", type=Path)
    p.add_argument("--width", type=int, default=100_000)
    p.add_argument("--height", type=int, default=80_000)
    p.add_argument("--mpp", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--level-factor", type=int, default=2, choices=[2, 4], help="downsample between levels"
    )
    p.add_argument("--max-levels", type=int, default=None, help="1: no pyramid")
    args = p.parse_args()
    t0 = time.perf_counter()
    write_synthetic_slide(
        args.output,
        args.width,
        args.height,
        args.mpp,
        args.seed,
        level_factor=args.level_factor,
        max_levels=args.max_levels,
    )
    size = args.output.stat().st_size / 1e6
    print(
        f"wrote {args.output}: {args.width}x{args.height} px at {args.mpp} um/px, "
        f"levels every {args.level_factor}x, "
        f"{size:.0f} MB in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
