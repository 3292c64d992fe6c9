"""Seconds to render the tissue thumbnail and detect tissue on one slide: as the pipeline does
(from a level at least 2 um/px fine, up to 64 Mpx; JPEG tiles of large reductions decoded at
1/8 scale), from the slide's own 8 um/px level, and without the 1/8-scale decoding (every
pixel decoded), alternating, in one run (this machine is shared and noisy).

    python bench/tissue_render_time.py SLIDE [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

from pathssl.slide import open_slide
from pathssl.slide.resolution import resolve_mpp
from pathssl.tissue.detection import TISSUE_SOURCE_MPP, detect_tissue, render_thumbnail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("slide", help="a slide file")
    p.add_argument("--repeats", type=int, default=2, help="runs of each way (default: 2)")
    args = p.parse_args()
    import pathssl.tissue.detection as tissue_module

    fast = tissue_module._reduced_from_jpeg_tiles
    ways = {
        "pipeline": (TISSUE_SOURCE_MPP, fast),
        "from its 8 um/px level": (None, fast),
        "every pixel decoded": (TISSUE_SOURCE_MPP, lambda *args: None),
    }
    for _ in range(args.repeats):
        for name, (source, reducer) in ways.items():
            tissue_module._reduced_from_jpeg_tiles = reducer
            with open_slide(args.slide) as slide:
                mpp = resolve_mpp(slide, None).mpp
                t0 = time.perf_counter()
                thumb = render_thumbnail(slide, mpp, source_mpp=source)
                tissue = detect_tissue(thumb)
                seconds = time.perf_counter() - t0
            print(
                f"{name}: {seconds:.2f} s, "
                f"tissue {int(tissue.mask.sum())} px of {thumb.rgb.shape[:2]}"
            )


if __name__ == "__main__":
    main()
