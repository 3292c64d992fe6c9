"""PRISM (Paige): a Perceiver slide encoder on Virchow tile embeddings (class + mean, 2560-d)
of 224 px tiles at 20x; the slide embedding is its 1280-d "image_embedding"."""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.aggregation.local_weights import load_single_file
from pathssl.aggregation.models.prism import build, slide_encoder_state
from pathssl.aggregation.registry import SlideEncoderPreset, register


def load(model: torch.nn.Module, folder: Path) -> None:
    # model.safetensors also holds the report decoder (BioGPT) and the contrastive heads
    load_single_file(model, folder, PRESET, lambda state: slide_encoder_state(state, model))


def encode(
    model: torch.nn.Module, features: torch.Tensor, coords: torch.Tensor, patch_size_l0_px: int
) -> torch.Tensor:
    return model(features.float()[None])[0]  # tile order does not matter to a Perceiver


PRESET = register(
    SlideEncoderPreset(
        name="prism",
        description="PRISM slide encoder (Perceiver image embedding, 1280-d) on Virchow tiles",
        tile_encoders=("virchow",),
        tile_size_px=224,
        target_mpp=0.5,
        tile_embedding_dim=2560,
        embedding_dim=1280,
        weight_files=("model.safetensors",),
        download="https://huggingface.co/paige-ai/Prism (gated: accept the terms first)",
        licence="CC-BY-NC-ND-4.0",
        gated=True,
        build=build,
        load_weights=load,
        encode=encode,
    )
)
