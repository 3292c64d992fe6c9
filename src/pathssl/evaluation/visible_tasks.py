"""The visible benchmark's tasks (#23): every labelled set of ../shared/data/labelled and the
organ of origin of MoNuSeg's regions, each image with its label and its group (the patient
or source image: tiles of one group never straddle folds).

- a labelled set is a folder with `labels.csv` (`file,label`, optional `group`); images are
  found by name anywhere below it. Without a group column each image is its own group (the
  CRC-VAL-HE-7K tiles name no patient). Its resolution: `dataset.json` (`{"mpp": ...}`), else
  KNOWN_MPP, else none (each image resized whole to the encoder's input);
- monuseg-organ: all 44 regions of corpus/monuseg_he_40x (train and test pooled), labelled by
  organ (the six MoNuSeg lists as liver come from TCGA lung sites: lung), grouped by TCGA
  patient, at 0.25 um/px.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathssl.errors import PathsslError
from pathssl.evaluation.tiles import IMAGE_SUFFIXES

# resolutions stated by the sets' sources (PROVENANCE.md), not guessed from pixels
KNOWN_MPP = {"crc_val_he_32": 0.5}
MONUSEG = Path("corpus") / "monuseg_he_40x"
MONUSEG_MPP = 0.25


@dataclass(frozen=True)
class Task:
    name: str
    paths: list[Path]
    labels: np.ndarray  # class index per image
    groups: np.ndarray  # group index per image
    classes: list[str]
    image_mpp: float | None  # None: each image is one tile, resized whole


def make_task(name: str, rows: list[tuple[Path, str, str]], image_mpp: float | None) -> Task:
    """A task from (path, label, group) rows; a group with two labels is an error."""
    classes = sorted({label for _, label, _ in rows})
    group_names = sorted({group for _, _, group in rows})
    labels = np.array([classes.index(label) for _, label, _ in rows], np.int64)
    groups = np.array([group_names.index(group) for _, _, group in rows], np.int64)
    for g in np.unique(groups):
        if len(np.unique(labels[groups == g])) > 1:
            raise PathsslError(
                f"{name}: group {group_names[g]!r} holds images of two labels; a group is one "
                "patient or source image with one label"
            )
    return Task(name, [p for p, _, _ in rows], labels, groups, classes, image_mpp)


def _dataset_mpp(folder: Path) -> float | None:
    meta = folder / "dataset.json"
    if meta.is_file():
        try:
            return float(json.loads(meta.read_text())["mpp"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PathsslError(f'{meta}: expected {{"mpp": <microns per pixel>}} ({exc})') from exc
    return KNOWN_MPP.get(folder.name)


def labelled_set(folder: Path) -> Task:
    """A folder with labels.csv (file,label[,group]) as a task."""
    folder = Path(folder)
    found = {p.name: p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    rows = []
    with open(folder / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            name = Path(r["file"]).name
            if name not in found:
                raise PathsslError(
                    f"{folder / 'labels.csv'}: {r['file']} is listed but not found below "
                    f"{folder}; restore the image or remove its row"
                )
            rows.append((found[name], r["label"], r.get("group") or name))
    return make_task(folder.name, rows, _dataset_mpp(folder))


def monuseg_organ(shared: Path) -> Task:
    """Organ of origin of MoNuSeg's regions, all 44 pooled, grouped by TCGA patient."""
    root = Path(shared) / MONUSEG
    rows = []
    with open(root / "meta.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            organ = r["organ_reported_by_monuseg"]
            patient = "-".join(r["file"].split("-")[:3])  # TCGA-XX-YYYY
            label = "lung" if organ == "liver" else organ
            rows.append((root / r["split"] / r["file"], label, patient))
    return make_task("monuseg-organ", rows, MONUSEG_MPP)


def visible_tasks(shared: Path) -> list[Task]:
    """Every labelled set of shared/labelled, then monuseg-organ."""
    shared = Path(shared)
    labelled = shared / "labelled"
    if not labelled.is_dir() or not (shared / MONUSEG / "meta.csv").is_file():
        raise PathsslError(
            f"{shared}: no labelled/ or {MONUSEG}/meta.csv; give --shared the shared data "
            "folder (../shared/data)"
        )
    folders = sorted(d for d in labelled.iterdir() if (d / "labels.csv").is_file())
    return [*(labelled_set(d) for d in folders), monuseg_organ(shared)]
