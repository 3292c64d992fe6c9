"""CONCH v1.5's published vision tower (`pytorch_model_vision.bin`) -> the bundle's module.

The names already match (encoder/poolers.py); only the position embeddings change. The reference
code (TITAN's `conch_v1_5.py`, TRIDENT's copy) builds its ViT for 224 px and, at every forward
on a 448 px tile, resamples the 14 x 14 grid bicubically with DINO's scale factor (28 + 0.1) / 14:
not exactly 2, so timm's resampling to 28 x 28 would give other values. The bundle stores the
result of that step once, for its fixed 448 px input. A checkpoint saved for another grid is
first resampled to 14 x 14 (bilinear, no antialias), as TRIDENT does when it loads one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POS_EMBED_KEY = "trunk.pos_embed"
REFERENCE_GRID = 14  # the reference's ViT: 224 px tiles of 16 px patches
DINO_OFFSET = 0.1  # added to the target grid by the reference, against float error


def dino_resample(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + n*n, dim) class + patch embeddings resampled to grid x grid as DINO's code does."""
    patch = pos_embed[:, 1:]
    side, dim = math.sqrt(patch.shape[1]), patch.shape[-1]
    if int(side) == grid:
        return pos_embed
    scale = (grid + DINO_OFFSET) / side
    square = patch.reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    square = F.interpolate(square, scale_factor=(scale, scale), mode="bicubic")
    return torch.cat([pos_embed[:, :1], square.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def fit_conch_v1_5(
    state: dict[str, torch.Tensor], target: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The checkpoint with its position embeddings for the target's patch grid (448 px: 28)."""
    if POS_EMBED_KEY not in state:
        return state  # load_weights then names the missing key
    from timm.layers import resample_abs_pos_embed

    pos_embed = state[POS_EMBED_KEY].float()  # the reference resamples the float32 parameter
    if pos_embed.shape[1] != 1 + REFERENCE_GRID**2:
        pos_embed = resample_abs_pos_embed(
            pos_embed,
            new_size=[REFERENCE_GRID, REFERENCE_GRID],
            num_prefix_tokens=1,
            interpolation="bilinear",
            antialias=False,
            verbose=False,
        )
    grid = target.trunk.patch_embed.grid_size[0]
    return {**state, POS_EMBED_KEY: dino_resample(pos_embed, grid)}
