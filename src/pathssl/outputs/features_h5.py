"""features.h5 in the CLAM/TRIDENT layout: `features` (N, C) float32 and `coords` (N, 2)
level-0 (x, y), plus attributes describing resolution, tiling and model."""

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
    return h5
