"""Tissue and ink on the real fixtures of ../shared/data/patches: the share of each image
detected as tissue with marker-ink exclusion (the default) and without it, and the share
taken as ink. Each image is treated as a rendering at the detection resolution (8 um/px).

    python bench/tissue_ink.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.tissue.detection import Thumbnail, detect_tissue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    patches = args.shared / "patches"
    paths = sorted((patches / "histolab_fixture_tiles").glob("*.png"))
    paths += [patches / "skimage_ihc.png", patches / "tiatoolbox_target_image.png"]
    print(f"{'image':44} {'tissue':>7} {'no ink rule':>12} {'ink':>6}")
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        with_rule = detect_tissue(Thumbnail(rgb, 1.0, 8.0))
        without = detect_tissue(Thumbnail(rgb, 1.0, 8.0), exclude_ink=False)
        print(
            f"{path.name[:44]:44} {with_rule.mask.mean():7.1%} {without.mask.mean():12.1%} "
            f"{with_rule.ink_fraction:6.1%}"
        )


if __name__ == "__main__":
    main()
