"""The UNICORN challenge's JSON schemas for slide- and patch-level neural representations.

`meta` means what the consumers take it to mean (read from unicorn-eval 3.2.0 and
unicorn-baseline 1.4.4, and checked by tests/test_unicorn_consumer.py with unicorn-eval's own
code): the evaluator cuts each patch's labels as label[y : y + size, x : x + size] from a label
image in level-0 pixels, and stitches predictions into an image of `image-size` the same way.
So `coordinates`, `patch-size` and `image-size` are all in level-0 pixels, and both spacings
are microns per level-0 pixel (the baseline's unit). Provenance stays in the run record.

Grand-Challenge turns NaN into null silently, so features are checked finite before this.
The patch file is streamed: at no point is a second copy of all features held in memory.
Features are written by orjson as the shortest decimals that read back as the same float32
(json's float64 repr of float32 values is twice as long and 14 times slower, measured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson

CHUNK_TILES = 4096


def _floats(values: np.ndarray) -> str:
    """A JSON array of float32 values: shortest round-trip decimals."""
    array = np.ascontiguousarray(values, dtype=np.float32)
    return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def patch_meta(
    stride_l0_px: int, level0_mpp: float, level0_size_px: tuple[int, int]
) -> dict[str, Any]:
    """The `meta` of a patch-level representation: one feature vector per square patch whose
    top-left corner is its `coordinates` and whose side is `stride_l0_px` level-0 pixels."""
    width, height = level0_size_px
    return {
        "patch-size": [int(stride_l0_px), int(stride_l0_px)],
        "patch-spacing": [float(level0_mpp), float(level0_mpp)],
        "image-size": [int(width), int(height)],
        "image-spacing": [float(level0_mpp), float(level0_mpp)],
        "image-origin": [0.0, 0.0],
        "image-direction": [1.0, 0.0, 0.0, 1.0],
        "feature-grid-resolution": [1, 1],  # feature vectors per patch, per axis
    }


def write_slide_representation(path: Path, title: str, embedding: np.ndarray) -> None:
    head = json.dumps({"title": title})[:-1]
    path.write_text(f'[{head}, "features": {_floats(embedding)}}}]\n')


def write_patch_representation(
    path: Path, title: str, meta: dict[str, Any], coords_l0: np.ndarray, features: np.ndarray
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
