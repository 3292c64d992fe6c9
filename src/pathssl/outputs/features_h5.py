"""features.h5 in the CLAM/TRIDENT layout: `features` (N, C) float32 and `coords` (N, 2)
level-0 (x, y), plus attributes describing resolution, tiling and model: on the file, and
TRIDENT's names also on the `coords` and `features` datasets, where TRIDENT reads them
(trident/wsi_objects/WSI.py extract_slide_features: `dict(f['coords'].attrs)`, whose
`patch_size_level0` the TITAN and PRISM wrappers use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np


def create_features_file(
    path: Path, coords_l0: np.ndarray, embedding_dim: int, attrs: dict[str, Any]
) -> h5py.File:
    h5 = h5py.File(path, "w")
    chunk_rows = max(1, min(len(coords_l0), 1024))
    h5.create_dataset(
        "features",
        shape=(len(coords_l0), embedding_dim),
        dtype="float32",
        chunks=(chunk_rows, embedding_dim),
    )
    h5.create_dataset("coords", data=coords_l0.astype(np.int64))
    for key, value in attrs.items():
        h5.attrs[key] = value
    _peer_attrs(h5, attrs)
    return h5


def peer_coords_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The `coords` attributes TRIDENT writes (trident/IO.py coords_to_h5), from ours:
    magnification as 10 / (microns per pixel), unrounded, so that TRIDENT's
    patch_size * level0_magnification / target_magnification gives our level-0 tile side."""
    need = ("patch_size", "patch_size_level0", "mpp", "patch_mpp")
    if any(key not in attrs for key in need):
        return {}
    out = {
        "patch_size": int(attrs["patch_size"]),
        "patch_size_level0": int(attrs["patch_size_level0"]),
        "patch_level": int(attrs.get("patch_level", 0)),
        "level0_magnification": 10.0 / float(attrs["mpp"]),
        "target_magnification": 10.0 / float(attrs["patch_mpp"]),
        "overlap": 0,  # the grid's step is the tile side
    }
    if "level_dim" in attrs:
        out["level0_width"], out["level0_height"] = (int(v) for v in attrs["level_dim"])
    return out


def _peer_attrs(h5: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in peer_coords_attrs(attrs).items():
        h5["coords"].attrs[key] = value
    if "model_name" in attrs:
        h5["features"].attrs["encoder"] = attrs["model_name"]


# Up to this size features.h5 is assembled in memory and written with plain file I/O, so a
# disk that fills is a clean OSError: HDF5's own write path can crash the process on ENOSPC.
# Larger files are written by HDF5 directly, after the pipeline's free-space check.
IN_MEMORY_MAX_BYTES = 512 * 2**20


def write_features_file(
    path: Path,
    coords_l0: np.ndarray,
    features: np.ndarray,
    attrs: dict[str, Any],
    *,
    augmented: list[np.ndarray] | None = None,
    per_tile: dict[str, np.ndarray] | None = None,
    chunk_rows: int = 1024,
) -> None:
    """features.h5 from finished arrays (memory-mapped is fine), copied in row chunks;
    `per_tile` adds (N,) datasets (tile QC measures)."""
    augmented = augmented or []
    per_tile = per_tile or {}

    def fill(h5: h5py.File) -> None:
        _fill(
            h5,
            coords_l0,
            features,
            attrs,
            augmented=augmented,
            per_tile=per_tile,
            chunk_rows=chunk_rows,
        )

    if features.nbytes * (1 + len(augmented)) > IN_MEMORY_MAX_BYTES:
        with h5py.File(path, "w") as h5:
            fill(h5)
        return
    with h5py.File(f"{path}.in-memory", "w", driver="core", backing_store=False) as h5:
        fill(h5)
        h5.flush()
        image = h5.id.get_file_image()
    with open(path, "wb") as fh:
        fh.write(image)


def _fill(
    h5: h5py.File,
    coords_l0: np.ndarray,
    features: np.ndarray,
    attrs: dict[str, Any],
    *,
    augmented: list[np.ndarray],
    per_tile: dict[str, np.ndarray],
    chunk_rows: int,
) -> None:
    rows, dim = features.shape
    rows_per_chunk = max(1, min(rows, chunk_rows))
    h5.create_dataset("features", (rows, dim), dtype="float32", chunks=(rows_per_chunk, dim))
    h5.create_dataset("coords", data=coords_l0.astype(np.int64))
    for key, value in attrs.items():
        h5.attrs[key] = value
    _peer_attrs(h5, attrs)
    for name, values in per_tile.items():
        h5.create_dataset(name, data=np.asarray(values))
    for start in range(0, rows, chunk_rows):
        h5["features"][start : start + chunk_rows] = features[start : start + chunk_rows]
    if augmented:
        aug = h5.create_dataset(
            "augmented_features",
            (len(augmented), rows, dim),
            dtype="float32",
            chunks=(1, rows_per_chunk, dim),
        )
        for k, copy in enumerate(augmented):
            for start in range(0, rows, chunk_rows):
                aug[k, start : start + chunk_rows] = copy[start : start + chunk_rows]
