"""The run record's parts and the features.h5 attributes of one slide, and dropping
QC-flagged tiles."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import pathssl
from pathssl.embed.options import EmbedOptions
from pathssl.encoder.bundle import EncoderBundle
from pathssl.errors import PathsslError
from pathssl.outputs.provenance import code_sha256
from pathssl.slide.resolution import Resolution
from pathssl.tiles.grid import TileGrid, TilingSpec
from pathssl.tissue.detection import TissueMask
from pathssl.tissue.tile_qc import TileQC

log = logging.getLogger("pathssl")


def h5_attrs(
    resolution: Resolution, grid: TileGrid, slide_info: dict[str, Any], bundle: EncoderBundle
) -> dict[str, Any]:
    """features.h5 attributes, named as in CLAM/TRIDENT feature files."""
    return {
        "mpp": resolution.mpp,
        "mpp_source": resolution.source,
        "patch_mpp": grid.patch_mpp,
        "patch_size": grid.tile_size_px,
        "patch_size_level0": grid.stride_l0_px,
        "patch_level": grid.level,
        "level_dim": list(slide_info["dimensions_px"]),
        "model_name": bundle.config.name,
        "model_sha256": bundle.weights_sha256,
        "model_trained": bundle.config.trained,
        "pathssl_version": pathssl.__version__,
        "code_sha256": code_sha256(),
    }


def tissue_record(tissue: TissueMask) -> dict[str, Any]:
    return {
        "source": tissue.source,
        "mask_mpp": tissue.mpp,
        "fraction_of_slide": float(tissue.mask.mean()),
        "ink_fraction_excluded": tissue.ink_fraction,
    }


def tiling_record(
    spec: TilingSpec, grid: TileGrid, planned: int, augmentations: int
) -> dict[str, Any]:
    """How the slide was tiled; `planned`: tiles before --drop-flagged left any out."""
    return {
        "target_mpp": spec.target_mpp,
        "tile_size_px": grid.tile_size_px,
        "patch_mpp": grid.patch_mpp,
        "level": grid.level,
        "level_mpp": grid.level_mpp,
        "read_size_px": grid.read_size_px,
        "stride_level0_px": grid.stride_l0_px,
        "grid_shape": list(grid.grid_shape),
        "tiles": len(grid),
        "tiles_planned": planned,
        "tiles_in_tissue": grid.tissue_tiles,
        "min_tissue_fraction": spec.min_tissue_fraction,
        "max_tiles": spec.max_tiles,
        "capped": grid.tissue_tiles > planned,
        "augmented_copies": augmentations,
    }


def judges_ink(tissue: TissueMask, options: EmbedOptions) -> bool:
    """Ink is judged on brightfield slides unless the user keeps ink (--keep-ink)."""
    return options.exclude_ink and tissue.source != "detected-fluorescence"


def drop_flagged(
    slide_path: Path,
    grid: TileGrid,
    feats: np.ndarray,
    augmented: list[np.ndarray],
    qc: TileQC,
) -> tuple[TileGrid, np.ndarray, list[np.ndarray], TileQC]:
    """The grid, features and QC without the flagged tiles."""
    keep = ~qc.flagged
    if not keep.any():
        raise PathsslError(
            f"{slide_path}: tile QC flags all {len(keep)} tiles (ink {int(qc.ink.sum())}, "
            f"blur {int(qc.blurred.sum())}); run without --drop-flagged to keep them"
        )
    kept = replace(grid, grid_rc=grid.grid_rc[keep], tissue_fraction=grid.tissue_fraction[keep])
    kept_qc = replace(qc, ink_fraction=qc.ink_fraction[keep], focus=qc.focus[keep])
    feats, augmented = np.asarray(feats[keep]), [np.asarray(a[keep]) for a in augmented]
    return kept, feats, augmented, kept_qc
