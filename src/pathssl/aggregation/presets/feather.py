"""FEATHER-24K (MahmoodLab): ABMIL slide encoder on CONCH v1.5 features of 512 px tiles at
20x; 0.9M parameters, so it runs in well under a second per slide on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.aggregation.local_weights import load_single_file
from pathssl.aggregation.models.feather import FeatherSlideEncoder
from pathssl.aggregation.registry import SlideEncoderPreset, register


def published_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ABMILModel's `model.` prefix off; a classifier head (if one is saved) left out."""
    state = {k.removeprefix("model."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


def load(model: torch.nn.Module, folder: Path) -> None:
    load_single_file(model, folder, PRESET, published_keys)


def encode(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, patch_size_l0_px: int
) -> torch.Tensor:
    return model(features)  # attention pooling: no positions


PRESET = register(
    SlideEncoderPreset(
        name="feather",
        description="FEATHER-24K ABMIL (512-d) on CONCH v1.5 tile features",
        tile_encoders=("conch_v1_5",),
        tile_size_px=512,
        target_mpp=0.5,
        tile_embedding_dim=768,
        embedding_dim=512,
        weight_files=("model.safetensors",),
        download="https://huggingface.co/MahmoodLab/abmil.base.conch_v15.pc108-24k "
        "(gated: accept the terms first)",
        licence="CC-BY-NC-ND-4.0",
        gated=True,
        build=FeatherSlideEncoder,
        load_weights=load,
        encode=encode,
    )
)
