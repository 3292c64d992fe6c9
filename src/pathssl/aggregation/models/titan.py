"""TITAN's slide encoder (the vision tower of MahmoodLab/TITAN), written from the published
architecture: CONCH v1.5 tile features placed on their 2-D grid, a 6-block ViT with ALiBi
distances between grid cells, and an attentional pooler. Parameter names follow the
published checkpoint's `vision_encoder.*` keys so that it loads unchanged.

Only the slide embedding (batch of one, background cells dropped) is computed here; the
text tower and the 128-query pooler of the captioning decoder are kept as parameters only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

DIM = 768
DEPTH = 6
HEADS = 12
POOL_HEADS = 8
POOL_QUERIES = 128  # captioning pooler: loaded, not used for the slide embedding
ALIBI_ROWS = 1024  # rows of the distance matrix computed at once (bounds the memory)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class Blocks(nn.Module):
    """A named list (`blocks.modules_list.N`), as in the published checkpoint."""

    def __init__(self, depth: int, dim: int, heads: int) -> None:
        super().__init__()
        self.modules_list = nn.ModuleList(Block(dim, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for block in self.modules_list:
            x = block(x, bias)
        return x


class AttentionalPooler(nn.Module):
    def __init__(self, dim: int, heads: int, queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(queries, dim))
        self.attn = nn.MultiheadAttention(dim, heads, kdim=dim, vdim=dim)
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (1, L, D) -> (queries, D)."""
        keys = self.ln_k(x).permute(1, 0, 2)  # (L, 1, D)
        query = self.ln_q(self.query).unsqueeze(1)  # (queries, 1, D)
        out, _ = self.attn(query, keys, keys, need_weights=False)
        return out[:, 0]


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's geometric slopes (Press et al.), extended to a head count not a power of 2."""
    if math.log2(heads).is_integer():
        p = 2 ** (-(2 ** -(math.log2(heads) - 3)))
        return [p * p**i for i in range(heads)]
    lower = 2 ** math.floor(math.log2(heads))
    return alibi_slopes(lower) + alibi_slopes(2 * lower)[0::2][: heads - lower]


def alibi_bias(cells_rc: torch.Tensor, heads: int) -> torch.Tensor:
    """(heads, N+1, N+1) float32: minus slope x Euclidean grid distance between cells; the
    class token (index 0) has no bias. Distances in float64 as in the published code."""
    n, device = cells_rc.shape[0], cells_rc.device
    slopes = torch.tensor(alibi_slopes(heads), dtype=torch.float32, device=device).view(heads, 1, 1)
    bias = torch.zeros(heads, n + 1, n + 1, dtype=torch.float32, device=device)
    rc = cells_rc.to(torch.int64)
    for start in range(0, n, ALIBI_ROWS):
        d = rc[start : start + ALIBI_ROWS, None, :] - rc[None, :, :]
        dist = (d * d).sum(-1).to(torch.float64).sqrt().to(torch.float32)
        bias[:, 1 + start : 1 + start + dist.shape[0], 1:] = dist[None] * slopes * -1
    return bias


def grid_tokens(
    features: torch.Tensor, coords_px: torch.Tensor, patch_size_px: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile features summed into grid cells (coords // patch size, from the top-left tile) and
    the non-empty cells in row-major order of (coords[:, 0], coords[:, 1]): (M, C), (M, 2)."""
    cells = torch.div(coords_px - coords_px.min(dim=0).values, patch_size_px, rounding_mode="floor")
    cells = cells - cells.min(dim=0).values
    width = int(cells[:, 1].max()) + 1
    flat = cells[:, 0] * width + cells[:, 1]
    order, inverse = torch.unique(flat, sorted=True, return_inverse=True)
    summed = features.new_zeros(len(order), features.shape[1])
    summed.index_add_(0, inverse.to(features.device), features)
    keep = torch.any(summed != 0, dim=1)  # an all-zero cell is background, as published
    rc = torch.stack([order // width, order % width], dim=1)
    return summed[keep], rc[keep.to(rc.device)].to(features.device)


class TitanSlideEncoder(nn.Module):
    """TITAN's vision tower; forward(features (N, 768), coords (N, 2), patch size) -> (768,)."""

    def __init__(self, dim: int = DIM, depth: int = DEPTH, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.patch_embed = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = Blocks(depth, dim, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn_pool = AttentionalPooler(dim, POOL_HEADS, POOL_QUERIES)
        self.attn_pool_contrastive = AttentionalPooler(dim, POOL_HEADS, 1)
        self.proj = nn.Parameter(dim**-0.5 * torch.randn(dim, dim))  # not applied (no_proj)

    def forward(
        self, features: torch.Tensor, coords_px: torch.Tensor, patch_size_px: int
    ) -> torch.Tensor:
        tokens, cells_rc = grid_tokens(features, coords_px, patch_size_px)
        x = self.patch_embed(tokens.unsqueeze(0))
        x = torch.cat([self.cls_token.to(x.dtype), x], dim=1)
        bias = alibi_bias(cells_rc, self.heads).to(x.dtype)  # built where the tiles are
        x = self.norm(self.blocks(x, bias.unsqueeze(0)))
        return self.attn_pool_contrastive(x)[0]
