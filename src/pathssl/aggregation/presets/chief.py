"""CHIEF (hms-dbmi): a gated attention-MIL slide encoder on CHIEF's CTransPath tile features
(768-d); the slide embedding is its attention-weighted mean of the tile features."""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.aggregation.local_weights import load_single_file
from pathssl.aggregation.models.chief import build
from pathssl.aggregation.registry import SlideEncoderPreset, register


def load(model: torch.nn.Module, folder: Path) -> None:
    load_single_file(model, folder, PRESET)


def encode(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, patch_size_l0_px: int
) -> torch.Tensor:
    return model(features.float())  # attention pooling: tile order does not matter


PRESET = register(
    SlideEncoderPreset(
        name="chief",
        description="CHIEF slide encoder (attention-MIL WSI feature, 768-d) on CTransPath tiles",
        tile_encoders=("ctranspath",),
        tile_size_px=256,
        target_mpp=1.0,  # 10x, as CHIEF's paper tiles slides (the code does not say)
        tile_embedding_dim=768,
        embedding_dim=768,
        weight_files=("CHIEF_pretraining.pth",),
        download=(
            "https://drive.google.com/drive/folders/1uRv9A1HuTW5m_pJoyMzdN31bE1i-tDaV "
            "(request access; see github.com/hms-dbmi/CHIEF)"
        ),
        licence="AGPL-3.0 code; weights for non-commercial academic use",
        gated=True,
        build=build,
        load_weights=load,
        encode=encode,
    )
)
