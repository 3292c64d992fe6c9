"""The UNICORN challenge's JSON schemas for slide- and patch-level neural representations.

Grand-Challenge turns NaN into null silently, so features are checked finite before this.
The patch file is streamed: at no point is a second copy of all features held in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

CHUNK_TILES = 4096


def write_slide_representation(path: Path, title: str, embedding: np.ndarray) -> None:
    record = [{"title": title, "features": embedding.astype(np.float32).tolist()}]
    path.write_text(json.dumps(record) + "\n")


def write_patch_representation(
    path: Path, title: str, meta: dict[str, Any], coords_l0: np.ndarray, features: h5py.Dataset
) -> None:
    head = json.dumps({"title": title, "meta": meta})[:-1]  # reopen the object to add patches
    with open(path, "w") as fh:
        fh.write("[" + head + ', "patches": [')
        for start in range(0, len(coords_l0), CHUNK_TILES):
            block = features[start : start + CHUNK_TILES]
            for i, row in enumerate(block):
                x, y = coords_l0[start + i]
                sep = "," if start + i else ""
                fh.write(
                    f'{sep}\n{{"coordinates": [{int(x)}, {int(y)}], '
                    f'"features": {json.dumps(row.tolist())}}}'
                )
        fh.write("\n]}]\n")
