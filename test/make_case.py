"""Rebuild the container's test cases (test/input/<case>) from the CC0 CMU slide, as
Grand-Challenge stores uploads and writes inputs.json:

    .venv/bin/python test/make_case.py tests/data/CMU-1-Small-Region.svs

Slides and masks are written the way panimg 0.18.2 stores an upload (read from its source,
panimg/image_builders/tiff.py): `_convert_to_tiff` has libvips write a tiled (128 px),
pyramidal BigTIFF, JPEG quality 70, whose resolution lives in the TIFF resolution tags (libvips
writes pixels per centimetre), with no vendor description; a mask keeps its values and carries
MinSampleValue/MaxSampleValue, which panimg reads to list the segments a Segmentation socket
checks against its overlay segments. Here tifffile writes the same structure (libvips with
OpenSlide is not a dependency). ROI cropouts are written as the platform keeps small images:
one level, no pyramid (a tiled TIFF, or a .mha with spacing in mm).

Cases:
  wsi, wsi-with-tissue-mask          the plain interfaces (ordinary algorithm page)
  task01-biopsy-classification       UNICORN Task01 slug, task description, image-level output
  task04-ihc-classification          Task04 slug, IHC (the CMU slide recoloured to
                                     haematoxylin + DAB), tissue mask, task description
  task05-roi-detection               Task05 ROI cropout slug, one-level TIFF, detection
  task09-roi-segmentation            Task09 ROI cropout slug, .mha, segmentation
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
import zlib
from pathlib import Path

import numpy as np
import openslide
import SimpleITK as sitk
import tifffile

HERE = Path(__file__).resolve().parent
SLIDE_PK = "d25c7a12-757b-48bc-b152-f2e645c709f3"
MASK_PK = "5c3d9a51-2f1e-4a8e-9d07-6b0c1e4f7a21"
MASK_SEGMENTS = [
    {"name": "background", "visible": False, "voxel_value": 0},
    {"name": "tissue", "visible": True, "voxel_value": 1},
]
TASKS = {
    "task01-biopsy-classification": (
        "Task01_classifying_he_prostate_biopsies_into_isup_scores",
        "classification",
    ),
    "task04-ihc-classification": (
        "Task04_predicting_slide_level_tumor_proportion_score_in_ihc_stained_wsi",
        "classification",
    ),
    "task05-roi-detection": (
        "Task05_detecting_signet_ring_cells_in_he_stained_wsi_of_gastric_cancer",
        "detection",
    ),
    "task09-roi-segmentation": ("Task09_segmenting_rois_in_breast_cancer_wsis", "segmentation"),
}


def pk(name: str) -> str:
    """A stable image pk per case file (Grand-Challenge names stored images <pk>.<ext>)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pathssl-test/{name}"))


def pyramid(image: np.ndarray) -> list[np.ndarray]:
    """Halvings down to 128 px (libvips' pyramid=True: 2x2 box average per level)."""
    levels = [image]
    while max(levels[-1].shape[:2]) > 128:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        shape = (h // 2, 2, w // 2, 2, *a.shape[2:])
        levels.append(a[:h, :w].reshape(shape).mean((1, 3)).round().astype(np.uint8))
    return levels


def write_tiff(path: Path, image: np.ndarray, mpp: float, *, levels: bool = True) -> None:
    """A tiled BigTIFF as panimg stores it: JPEG Q70 (RGB) or lossless with sample-value
    tags (a mask), resolution in pixels per centimetre."""
    mask = image.ndim == 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, level in enumerate(pyramid(image) if levels else [image]):
            per_cm = 10_000 / (mpp * 2**i)
            extra = []
            if mask:  # panimg: segments = range(MinSampleValue, MaxSampleValue + 1)
                extra = [
                    (280, "H", 1, int(image.min()), True),
                    (281, "H", 1, int(image.max()), True),
                ]
            tif.write(
                level,
                tile=(128, 128),
                photometric="minisblack" if mask else "rgb",
                compression="adobe_deflate" if mask else "jpeg",
                compressionargs={} if mask else {"level": 70},
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                extratags=extra,
            )


def to_ihc(rgb: np.ndarray) -> np.ndarray:
    """H&E recoloured as haematoxylin + DAB (Ruifrok-Johnston colour deconvolution): the
    eosin density is drawn in DAB brown, so the slide looks like a brown IHC stain."""
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    od = -np.log(np.maximum(rgb.astype(np.float64), 1) / 255.0)
    density = od.reshape(-1, 3) @ np.linalg.inv(stains)  # H, E, DAB
    density = np.clip(density, 0, None)
    hed = np.stack([density[:, 0], np.zeros(len(density)), 0.8 * density[:, 1]], axis=1)
    out = 255.0 * np.exp(-(hed @ stains))
    return np.clip(out, 0, 255).round().astype(np.uint8).reshape(rgb.shape)


def socket(slug: str, kind: str, title: str, relative_path: str, **more) -> dict:
    super_kind = "Image" if kind in ("Image", "Segmentation") else "Value"
    return {
        "title": title,
        "description": "",
        "slug": slug,
        "kind": kind,
        "super_kind": super_kind,
        "relative_path": relative_path,
        "pk": zlib.crc32(slug.encode()) % 1000,
        **more,
    }


def image_input(slug: str, kind: str, title: str, image_pk: str, name: str, **more) -> dict:
    return {
        "pk": 1,
        "interface": socket(slug, kind, title, f"images/{slug}", **more),
        "value": None,
        "file": None,
        "image": {"pk": image_pk, "name": name},
    }


def task_input(case: Path, task_name: str, task_type: str) -> dict:
    value = {
        "task_name": task_name,
        "domain": "pathology",
        "modality": "vision",
        "task_type": task_type,
    }
    (case / "unicorn-task-description.json").write_text(json.dumps(value, indent=2) + "\n")
    return {
        "pk": 3,
        "interface": socket(
            "unicorn-task-description",
            "Anything",
            "UNICORN Task Description",
            "unicorn-task-description.json",
        ),
        "value": value,
        "file": None,
        "image": None,
    }


def new_case(name: str) -> Path:
    case = HERE / "input" / name
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    return case


def write_inputs(case: Path, inputs: list[dict]) -> None:
    (case / "inputs.json").write_text(json.dumps(inputs, indent=2) + "\n")


def mask_input(case: Path, mask: np.ndarray, mpp: float, image_pk: str, name: str) -> dict:
    write_tiff(case / "images" / "tissue-mask" / f"{image_pk}.tif", mask, mpp, levels=False)
    return image_input(
        "tissue-mask",
        "Segmentation",
        "Tissue Mask",
        image_pk,
        name,
        overlay_segments=MASK_SEGMENTS,
    )


def main(svs: Path) -> None:
    src = openslide.OpenSlide(svs)
    mpp = float(src.properties["openslide.mpp-x"])
    rgb = np.asarray(src.read_region((0, 0), 0, src.dimensions).convert("RGB"))
    height, width = rgb.shape[:2]
    name = "cmu-1-small-region.tif"

    # The plain interfaces, and Task01 on the same stored slide.
    for case_name in ("wsi", "wsi-with-tissue-mask", "task01-biopsy-classification"):
        case = new_case(case_name)
        slug = "prostate-tissue-biopsy-whole-slide-image" if "task01" in case_name else None
        slug = slug or "whole-slide-image"
        write_tiff(case / "images" / slug / f"{SLIDE_PK}.tif", rgb, mpp)
        inputs = [image_input(slug, "Image", "Whole Slide Image", SLIDE_PK, name)]
        if case_name == "wsi-with-tissue-mask":  # the upper half, at 8x the slide's spacing
            mask = np.zeros((-(-height // 8), -(-width // 8)), np.uint8)
            mask[: mask.shape[0] // 2] = 1
            inputs.append(mask_input(case, mask, mpp * 8, MASK_PK, "cmu-upper-half-mask.tif"))
        if case_name in TASKS:
            inputs.append(task_input(case, *TASKS[case_name]))
        write_inputs(case, inputs)

    # Task04: an IHC-looking region with a tissue mask of its left two thirds.
    case = new_case("task04-ihc-classification")
    crop = to_ihc(rgb[1100:1996, 600:1496])
    ihc_pk = pk("task04-ihc")
    write_tiff(case / "images" / "ihc-staining-for-pd-l1" / f"{ihc_pk}.tif", crop, mpp)
    mask = np.zeros((crop.shape[0] // 8, crop.shape[1] // 8), np.uint8)
    mask[:, : mask.shape[1] * 2 // 3] = 1
    write_inputs(
        case,
        [
            image_input(
                "ihc-staining-for-pd-l1", "Image", "IHC staining for PD-L1", ihc_pk, "ihc.tif"
            ),
            mask_input(case, mask, mpp * 8, pk("task04-mask"), "ihc_tissue.tif"),
            task_input(case, *TASKS["task04-ihc-classification"]),
        ],
    )

    # Task05: an ROI cropout, one level, no pyramid (a tiled TIFF).
    roi_slug = "histopathology-region-of-interest-cropout"
    case = new_case("task05-roi-detection")
    roi_pk = pk("task05-roi")
    write_tiff(
        case / "images" / roi_slug / f"{roi_pk}.tif", rgb[1200:2096, 600:1496], mpp, levels=False
    )
    write_inputs(
        case,
        [
            image_input(
                roi_slug, "Image", "Histopathology Region of Interest Cropout", roi_pk, "roi.tif"
            ),
            task_input(case, *TASKS["task05-roi-detection"]),
        ],
    )

    # Task09: an ROI cropout as .mha (spacing in mm), as the platform stores small images.
    case = new_case("task09-roi-segmentation")
    seg_pk = pk("task09-roi")
    image = sitk.GetImageFromArray(rgb[1400:1848, 800:1248], isVector=True)
    image.SetSpacing((mpp / 1000, mpp / 1000))
    target = case / "images" / roi_slug / f"{seg_pk}.mha"
    target.parent.mkdir(parents=True)
    sitk.WriteImage(image, str(target), useCompression=True)
    write_inputs(
        case,
        [
            image_input(
                roi_slug, "Image", "Histopathology Region of Interest Cropout", seg_pk, "roi.mha"
            ),
            task_input(case, *TASKS["task09-roi-segmentation"]),
        ],
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
