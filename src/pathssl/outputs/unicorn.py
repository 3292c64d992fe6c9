"""The UNICORN challenge's JSON schemas for slide- and patch-level neural representations.

Grand-Challenge turns NaN into null silently, so features are checked finite before this.
The patch file is streamed: at no point is a second copy of all features held in memory.
Features are written by orjson as the shortest decimals that read back as the same float32
(json's float64 repr of float32 values is twice as long and 14 times slower, measured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import orjson

CHUNK_TILES = 4096


def _floats(values: np.ndarray) -> str:
    """A JSON array of float32 values: shortest round-trip decimals."""
    array = np.ascontiguousarray(values, dtype=np.float32)
    return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def write_slide_representation(path: Path, title: str, embedding: np.ndarray) -> None:
    head = json.dumps({"title": title})[:-1]
    path.write_text(f'[{head}, "features": {_floats(embedding)}}}]\n')


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
                    f'{sep}\n{{"coordinates": [{int(x)}, {int(y)}], "features": {_floats(row)}}}'
                )
        fh.write("\n]}]\n")
