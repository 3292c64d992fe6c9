"""Seconds to render the tissue thumbnail and detect tissue on one slide: from the level the
pipeline uses (at least 2 um/px fine, up to 64 Mpx) against the slide's own 8 um/px level,
alternating, in one run (this machine is shared and noisy).

    python bench/tissue_render_time.py SLIDE [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

from pathssl.slide import open_slide
from pathssl.slide.resolution import resolve_mpp
from pathssl.tissue import TISSUE_SOURCE_MPP, detect_tissue, render_thumbnail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("slide", help="a slide file")
    p.add_argument("--repeats", type=int, default=2, help="runs of each way (default: 2)")
    args = p.parse_args()
    ways = {"from >= 2 um/px (pipeline)": TISSUE_SOURCE_MPP, "from its 8 um/px level": None}
    for _ in range(args.repeats):
        for name, source in ways.items():
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
