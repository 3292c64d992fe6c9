"""CHIEF's slide encoder (hms-dbmi/CHIEF, models/CHIEF.py, size "small"): a gated
attention-MIL over CTransPath tile features (768-d). The slide embedding is CHIEF's
"WSI_feature": the attention-weighted mean of the ORIGINAL tile features (768-d), which does
not depend on the anatomical-site text embedding. The classifier heads, the site embeddings
and their projection are kept as parameters only, so that CHIEF_pretraining.pth loads with
its published key names, strictly.

Written from the published architecture (CHIEF's code is AGPL-3.0 and is not copied here).
"""

from __future__ import annotations

import torch
from torch import nn

FEATURE_DIM = 768  # size "small": [768, 512, 256]
HIDDEN_DIM = 512
ATTENTION_DIM = 256
ANATOMIC_SITES = 19
TEXT_DIM = 768


class GatedAttention(nn.Module):
    """Attn_Net_Gated: tanh branch times sigmoid gate, then one score per tile."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.attention_a = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(0.25))
        self.attention_b = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(0.25))
        self.attention_c = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_c(self.attention_a(x) * self.attention_b(x))


class AttentionHead(nn.Module):
    """Att_Head (unused for the slide embedding; loaded so that the checkpoint fits)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)


class ChiefSlideEncoder(nn.Module):
    """forward(features (N, 768)) -> the slide embedding (768,)."""

    def __init__(self) -> None:
        super().__init__()
        self.attention_net = nn.Sequential(
            nn.Linear(FEATURE_DIM, HIDDEN_DIM),
            nn.ReLU(),
            nn.Dropout(0.25),
            GatedAttention(HIDDEN_DIM, ATTENTION_DIM),
        )
        self.classifiers = nn.Linear(HIDDEN_DIM, 2)
        self.instance_classifiers = nn.ModuleList(nn.Linear(HIDDEN_DIM, 2) for _ in range(2))
        self.att_head = AttentionHead(HIDDEN_DIM, ATTENTION_DIM)
        self.text_to_vision = nn.Sequential(
            nn.Linear(TEXT_DIM, HIDDEN_DIM), nn.ReLU(), nn.Dropout(0.25)
        )
        self.register_buffer("organ_embedding", torch.randn(ANATOMIC_SITES, TEXT_DIM))

    def attention(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax attention weights over the tiles, (N,)."""
        scores = self.attention_net(features)[:, 0]
        return torch.softmax(scores, dim=0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.attention(features) @ features


def build() -> ChiefSlideEncoder:
    """The architecture with random weights (the published file replaces them)."""
    return ChiefSlideEncoder().eval()
