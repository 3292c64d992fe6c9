"""FEATHER (MahmoodLab MIL-Lab): gated-attention ABMIL pretrained on a 108-class pan-cancer
task; the slide embedding is the attention-pooled 512-d feature before the classifier.
Parameter names follow the published checkpoint (after its `model.` prefix)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GatedAttention(nn.Module):
    """Ilse et al.'s gated attention: tanh branch x sigmoid branch -> one score per tile."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.attention_a = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh())
        self.attention_b = nn.Sequential(nn.Linear(dim, attn_dim), nn.Sigmoid())
        self.attention_c = nn.Linear(attn_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_c(self.attention_a(x) * self.attention_b(x))


class FeatherSlideEncoder(nn.Module):
    """forward(features (N, in_dim)) -> (embed_dim,): softmax-attention-weighted mean of the
    embedded tiles."""

    def __init__(self, in_dim: int = 768, embed_dim: int = 512, attn_dim: int = 384) -> None:
        super().__init__()
        self.patch_embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU())
        self.global_attn = GatedAttention(embed_dim, attn_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.patch_embed(features)  # (N, D)
        weights = F.softmax(self.global_attn(h)[:, 0], dim=0)  # (N,)
        return weights @ h
