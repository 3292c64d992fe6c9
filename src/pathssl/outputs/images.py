"""Image outputs written with SimpleITK: the feature map and the tissue mask (.mha).

Spacing is in millimetres, as ITK and Grand-Challenge expect. The feature map is a scalar
3-D image (C, rows, cols): Grand-Challenge rejects vector images of more than 4 components.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk

from pathssl.tiling import TileGrid

CHUNK_TILES = 16_384


def write_feature_map(
    path: Path, grid: TileGrid, features: h5py.Dataset, mpp: float, metadata: dict[str, str]
) -> tuple[int, int, int]:
    rows, cols = grid.grid_shape
    fmap = np.zeros((features.shape[1], rows, cols), np.float32)
    for start in range(0, len(grid), CHUNK_TILES):
        rc = grid.grid_rc[start : start + CHUNK_TILES]
        fmap[:, rc[:, 0], rc[:, 1]] = features[start : start + CHUNK_TILES].T
    image = sitk.GetImageFromArray(fmap, isVector=False)
    del fmap
    stride_mm = grid.stride_l0_px * mpp / 1000.0
    image.SetSpacing((stride_mm, stride_mm, 1.0))
    image.SetOrigin((stride_mm / 2, stride_mm / 2, 0.0))  # centre of the first cell
    _write(image, path, metadata)
    return features.shape[1], rows, cols


def write_mask(path: Path, mask: np.ndarray, mask_mpp: float, metadata: dict[str, str]) -> None:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    spacing_mm = mask_mpp / 1000.0
    image.SetSpacing((spacing_mm, spacing_mm))
    image.SetOrigin((spacing_mm / 2, spacing_mm / 2))
    _write(image, path, metadata)


def _write(image: sitk.Image, path: Path, metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        image.SetMetaData(key, str(value))
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.Execute(image)
