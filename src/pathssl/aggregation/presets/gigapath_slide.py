"""Prov-GigaPath's slide encoder: LongNet over Prov-GigaPath tile features (1536-d) at 0.5 mpp,
each tile placed on its own cell of the slide's tile grid; 768-d class token."""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.aggregation.local_weights import load_single_file
from pathssl.aggregation.models.gigapath_slide import build, grid_coords_px, positions_fit
from pathssl.aggregation.registry import SlideEncoderPreset, register
from pathssl.errors import InputLayoutError


def load(model: torch.nn.Module, folder: Path) -> None:
    load_single_file(model, folder, PRESET)


def encode(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, patch_size_l0_px: int
) -> torch.Tensor:
    grid = grid_coords_px(coords, patch_size_l0_px)
    if not positions_fit(grid):
        raise InputLayoutError(
            "gigapath-slide: the tissue spans more than 1000 tiles along one axis, beyond the "
            "position grid the slide encoder was trained on; use a smaller region"
        )
    # LongNet's segments and dilations follow the sequence: tiles in row-major order, as
    # Prov-GigaPath serialises a slide.
    cells = grid // 256
    order = torch.argsort(cells[:, 1] * 1000 + cells[:, 0], stable=True)
    return model(features.float()[order][None], grid[order][None])[0]


PRESET = register(
    SlideEncoderPreset(
        name="gigapath-slide",
        description="Prov-GigaPath slide encoder (LongNet, 768-d) on Prov-GigaPath tiles",
        tile_encoders=("prov-gigapath",),
        # Prov-GigaPath tiles 256 px at 0.5 mpp and its tile encoder sees their 224 px centre
        # crop; pathssl reads those 224 px edge to edge, each tile on its own 256 px grid cell.
        tile_size_px=224,
        target_mpp=0.5,
        tile_embedding_dim=1536,
        embedding_dim=768,
        weight_files=("slide_encoder.pth",),
        download=(
            "https://huggingface.co/prov-gigapath/prov-gigapath (gated: accept the terms first)"
        ),
        licence="Apache-2.0",
        gated=True,
        build=build,
        load_weights=load,
        encode=encode,
    )
)
