"""CTransPath's layers (the preset is presets/ctranspath.py, which loads no PyTorch): its
convolutional patch embedding, and the map from a timm 0.5.4 Swin checkpoint onto the
current timm Swin."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConvStem(nn.Module):
    """CTransPath's convolutional patch embedding, as timm's Swin calls a patch embedding
    (keyword arguments, NHWC output)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Any = None,
        **kwargs: Any,  # timm's strict_img_size, output_fmt ("NHWC"), device, dtype
    ) -> None:
        super().__init__()
        if patch_size != 4 or embed_dim % 8:
            raise ValueError("CTransPath's stem needs patch_size 4 and embed_dim divisible by 8")
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        channels, width = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels, width = width, width * 2
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # NHWC, as timm's Swin expects


def old_swin_to_timm(state: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """A timm 0.5.4 Swin state dict under the current timm Swin's names (timm's own filter:
    downsampling moved to the start of the next stage, the non-persistent buffers dropped)."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(state, target)
