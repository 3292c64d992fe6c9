"""Embedded slides (the folders `pathssl embed` writes) as training and evaluation data."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pathssl.errors import PathsslError


@dataclass
class EmbeddedSlide:
    name: str
    features: np.ndarray  # (N, C)
    grid_rc: np.ndarray  # (N, 2) integer (row, col)
    augmented: np.ndarray | None  # (K, N, C) or None

    @classmethod
    def load(cls, folder: Path, name: str | None = None) -> EmbeddedSlide:
        path = Path(folder) / "features.h5"
        try:
            with h5py.File(path, "r") as h5:
                feats = h5["features"][:]
                coords = h5["coords"][:]
                stride = int(h5.attrs["patch_size_level0"])
                aug = h5["augmented_features"][:] if "augmented_features" in h5 else None
        except (OSError, KeyError) as exc:
            raise PathsslError(
                f"{path}: not a pathssl features.h5 ({exc}); run `pathssl embed`"
            ) from exc
        rc = np.stack([coords[:, 1] // stride, coords[:, 0] // stride], axis=1)
        return cls(name or Path(folder).name, feats, rc, aug)


def find_embedded(root: Path) -> list[Path]:
    """Slide folders under root (each with features.h5), sorted."""
    folders = sorted(p.parent for p in Path(root).rglob("features.h5"))
    if not folders:
        raise PathsslError(f"{root}: no features.h5 found; embed slides with `pathssl embed`")
    return folders


def read_labels(path: Path) -> dict[str, str]:
    """CSV with columns `slide` (output folder name) and `label`."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"slide", "label"} <= set(rows[0]):
        raise PathsslError(f"{path}: labels CSV needs 'slide' and 'label' columns")
    return {r["slide"]: r["label"] for r in rows}
