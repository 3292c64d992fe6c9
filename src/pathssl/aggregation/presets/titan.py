"""TITAN (MahmoodLab): a slide encoder on CONCH v1.5 features of 512 px tiles at 20x."""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.aggregation.local_weights import load_single_file
from pathssl.aggregation.models.titan import TitanSlideEncoder
from pathssl.aggregation.registry import SlideEncoderPreset, register

# the ALiBi bias is 12 heads x N x N float32 (48 N^2 bytes): 3.2 GB at 8192 tiles (537 mm^2
# of tissue in 256 um tiles), which leaves room on a 16 GB T4 (docs/slide-encoders.md)
MAX_TILES = 8192
PREFIX = "vision_encoder."  # the published model.safetensors also holds the text tower


def vision_tower(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any(k.startswith(PREFIX) for k in state):
        return state
    return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}


def load(model: torch.nn.Module, folder: Path) -> None:
    load_single_file(model, folder, PRESET, vision_tower)


def encode(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, patch_size_l0_px: int
) -> torch.Tensor:
    return model(features, coords, patch_size_l0_px)


PRESET = register(
    SlideEncoderPreset(
        name="titan",
        description="TITAN slide encoder (vision tower, 768-d) on CONCH v1.5 tile features",
        tile_encoders=("conch_v1_5",),
        tile_size_px=512,
        target_mpp=0.5,
        tile_embedding_dim=768,
        embedding_dim=768,
        weight_files=("model.safetensors",),
        download="https://huggingface.co/MahmoodLab/TITAN (gated: accept the terms first)",
        licence="CC-BY-NC-ND-4.0",
        gated=True,
        build=TitanSlideEncoder,
        load_weights=load,
        encode=encode,
        max_tiles=MAX_TILES,
    )
)
