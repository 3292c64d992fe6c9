"""Decode ceiling for JPEG-tiled slides: megapixels/s of regions read by OpenSlide against the
compressed-tile path (slide/jpeg_tiles.py) on the CPU, and on the GPU when there is one, in
one run (alternating, median of the rounds).

    python bench/jpeg_decode.py SLIDE [--level 0] [--region 1024] [--regions 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import openslide
import torch

from pathssl.slide.jpeg_tiles import jpeg_tile_levels, read_region


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("slide", help="a JPEG-tiled slide (SVS, pyramidal TIFF)")
    p.add_argument("--level", type=int, default=0, help="pyramid level (default: 0)")
    p.add_argument("--region", type=int, default=1024, help="region side in px (default: 1024)")
    p.add_argument("--regions", type=int, default=16, help="regions per round (default: 16)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (default: 3)")
    args = p.parse_args()
    slide = openslide.OpenSlide(args.slide)
    levels = jpeg_tile_levels(args.slide, list(slide.level_dimensions))
    if len(levels) <= args.level:
        raise SystemExit(f"{args.slide}: level {args.level} is not JPEG-tiled")
    lv, ds, size = levels[args.level], slide.level_downsamples[args.level], args.region
    rng = np.random.default_rng(0)
    spots = [
        (int(rng.integers(0, lv.width - size)), int(rng.integers(0, lv.height - size)))
        for _ in range(args.regions)
    ]
    ways = {
        "openslide": lambda x, y: slide.read_region(
            (int(x * ds), int(y * ds)), args.level, (size, size)
        ),
        "compressed tiles, cpu": lambda x, y: read_region(lv, x, y, size, size, device="cpu"),
    }
    if torch.cuda.is_available():
        ways["compressed tiles, cuda"] = lambda x, y: read_region(
            lv, x, y, size, size, device="cuda"
        )
    rates: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.rounds):
        for name, read in ways.items():
            t0 = time.perf_counter()
            for x, y in spots:
                read(x, y)
            if name.endswith("cuda"):
                torch.cuda.synchronize()
            rates[name].append(len(spots) * size * size / 1e6 / (time.perf_counter() - t0))
    base = np.median(rates["openslide"])
    print(f"{args.slide}: level {args.level}, {len(spots)} regions of {size} px per round")
    for name, r in rates.items():
        print(f"{name:24s} {np.median(r):7.1f} Mpx/s ({np.median(r) / base:.2f}x OpenSlide)")


if __name__ == "__main__":
    main()
