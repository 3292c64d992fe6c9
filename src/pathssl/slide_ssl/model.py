"""The slide encoder: tile embeddings on their grid -> one slide embedding.

input projection -> [sparse residual block, 2x grid pooling] x stages -> sparse block ->
mean over the remaining cells -> linear -> embedding (512-d by default). LayerNorm, not
BatchNorm: a slide's embedding never depends on the other slides in a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from pathssl.slide_ssl.sparse_grid import SubmanifoldConv, neighbour_index, pool_grid


@dataclass(frozen=True)
class SlideEncoderConfig:
    in_dim: int
    width: int = 256
    out_dim: int = 512
    stages: int = 2
    proj_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


SLIDE_SHIFT_BITS = 20


class SparseBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.LayerNorm(width), SubmanifoldConv(width, width)
        self.norm2, self.conv2 = nn.LayerNorm(width), SubmanifoldConv(width, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)), neighbours)
        h = self.conv2(self.act(self.norm2(h)), neighbours)
        return x + h


class SlideEncoder(nn.Module):
    def __init__(self, config: SlideEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.input = nn.Sequential(
            nn.LayerNorm(config.in_dim), nn.Linear(config.in_dim, config.width)
        )
        self.blocks = nn.ModuleList(SparseBlock(config.width) for _ in range(config.stages + 1))
        self.out = nn.Sequential(
            nn.LayerNorm(config.width), nn.Linear(config.width, config.out_dim)
        )

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """features (N, in_dim), coords (N, 2) integer grid (row, col) -> (out_dim,)."""
        return self.forward_many([(features, coords)])[0]

    def forward_many(self, slides: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Several slides in one pass -> (B, out_dim). Each slide's rows are shifted by a
        multiple of 2**20, far enough (and divisible by every pooling) that no convolution
        or pooling cell ever joins two slides."""
        shift = 2**SLIDE_SHIFT_BITS
        coords = torch.cat(
            [
                c.long()
                - c.long().min(dim=0).values
                + torch.tensor([i * shift, 0], device=c.device)
                for i, (_, c) in enumerate(slides)
            ]
        )
        x = self.input(torch.cat([f for f, _ in slides]))
        for i, block in enumerate(self.blocks):
            x = block(x, neighbour_index(coords))
            if i < len(self.blocks) - 1:
                x, coords = pool_grid(x, coords, 2)
                shift //= 2
        slide_id = torch.div(coords[:, 0], shift, rounding_mode="floor")
        sums = x.new_zeros(len(slides), x.shape[1]).index_add_(0, slide_id, x)
        counts = torch.bincount(slide_id, minlength=len(slides)).clamp(min=1).to(x.dtype)
        return self.out(sums / counts[:, None])


class Projector(nn.Module):
    """Training-only head (SimCLR style); not part of the exported slide encoder."""

    def __init__(self, config: SlideEncoderConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.out_dim, config.out_dim),
            nn.GELU(),
            nn.Linear(config.out_dim, config.proj_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
