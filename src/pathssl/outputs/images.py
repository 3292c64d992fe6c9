"""Image outputs written with SimpleITK: the feature map and the tissue mask (.mha).

Spacing is in millimetres, as ITK and Grand-Challenge expect. The feature map is a scalar
3-D image (C, rows, cols): Grand-Challenge rejects vector images of more than 4 components.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk

from pathssl.tiles.grid import TileGrid


def write_feature_map(
    path: Path, grid: TileGrid, features: h5py.Dataset, mpp: float, metadata: dict[str, str]
) -> tuple[int, int, int]:
    """The (C, rows, cols) feature map, zeros off tissue, streamed channel block by block."""
    from pathssl.outputs.mha import write_feature_map_mha

    stride_mm = grid.stride_l0_px * mpp / 1000.0
    write_feature_map_mha(
        path,
        features,
        grid.grid_rc,
        grid.grid_shape,
        spacing_mm=stride_mm,
        origin_mm=stride_mm / 2,
        metadata=metadata,
        scratch=path.with_name(path.name + ".zraw"),
    )
    return features.shape[1], *grid.grid_shape


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
