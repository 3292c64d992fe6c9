"""Tissue and ink on the real fixtures of ../shared/data/patches: the share of each image
detected as tissue with marker-ink exclusion (the default) and without it, and the share
taken as ink. Each image is treated as a rendering at the detection resolution (8 um/px).

With --tiles, tile QC on real tissue as well: the shared corpus's H&E and IHC images cut into
the bundled model's tiles (112 px at 1 um/px), and for each set how many tiles tile QC finds
any ink in (above 2 %) and flags (above its 20 %). Every set but the last is tissue without
marker: a flag there is a false one. The last is CoNSeP's images of colon margins inked
black (train_2) and blue (train_12); not all of them touch the ink.

    python bench/tissue_ink.py [--shared ../shared/data] [--tiles]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.tissue.detection import Thumbnail, detect_tissue
from pathssl.tissue.tile_qc import INK_MAX_FRACTION, TileQC

TILE_PX = 112
INKED = ("train_2_", "train_12_")  # CoNSeP images of a margin inked black, and blue


def fixtures(patches: Path) -> None:
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


def tile_sets(shared: Path) -> dict[str, tuple[list[Path], int]]:
    """name: (images, reduction to about 1 um/px)."""
    corpus = shared / "corpus"
    consep = sorted((corpus / "consep_he_40x").rglob("*.jpg"))
    return {
        "MoNuSeg H&E, 7 organs (0.25 um/px)": (sorted(corpus.glob("monuseg_he_40x/*/*.tif")), 4),
        "CoNSeP colon H&E (0.25)": ([p for p in consep if not p.name.startswith(INKED)], 4),
        "brain H&E, GBM and LGG (0.25)": (sorted(corpus.glob("brain_he_tiles/*/raw_image/*")), 4),
        "TCGA tiles (0.5)": (sorted((corpus / "tcga_tiles").rglob("*.jpg")), 2),
        "CRC-VAL-HE, 8 classes (0.5)": (sorted((shared / "labelled").rglob("*.png")), 2),
        "DeepLIIF Ki-67 IHC, DAB (0.25)": (sorted(corpus.glob("deepliif_ihc/*/*.png")), 4),
        "patches: IHC (DAB) and H&E": (sorted((shared / "patches").glob("*.*g")), 1),
        "CoNSeP train_2, train_12: inked margins": (
            [p for p in consep if p.name.startswith(INKED)],
            4,
        ),
    }


def tiles_qc(shared: Path) -> None:
    print(f"\n{'tile QC, real images':40} {'tiles':>6} {'ink > 2 %':>10} {'flagged':>8}")
    for name, (paths, reduce) in tile_sets(shared).items():
        if not paths:
            print(f"{name:40} absent")
            continue
        fractions = []
        for path in paths:
            image = Image.open(path).convert("RGB")
            rgb = np.asarray(image.reduce(reduce) if reduce > 1 else image)
            side = min(TILE_PX, *rgb.shape[:2])  # CoNSeP's 256 px at 0.25 um/px: one 64 px tile
            tiles = [
                rgb[y : y + side, x : x + side]
                for y in range(0, rgb.shape[0] - side + 1, side)
                for x in range(0, rgb.shape[1] - side + 1, side)
            ]
            qc = TileQC.empty(len(tiles))
            qc.measure(np.stack(tiles).transpose(0, 3, 1, 2), np.arange(len(tiles)))
            fractions.append(qc.ink_fraction)
        ink = np.concatenate(fractions)
        print(f"{name:40} {len(ink):6} {(ink > 0.02).sum():10} {(ink > INK_MAX_FRACTION).sum():8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--tiles", action="store_true", help="tile QC on the shared corpus too")
    args = parser.parse_args()
    fixtures(args.shared / "patches")
    if args.tiles:
        tiles_qc(args.shared)


if __name__ == "__main__":
    main()
