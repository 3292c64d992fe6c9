"""Barlow Twins (Zbontar et al. 2021): decorrelate the cross-correlation of two views."""

from __future__ import annotations

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead
from torch import nn

from pathssl.pretrain.methods import register
from pathssl.pretrain.methods.base import SSLMethod


@register("barlow")
class BarlowTwins(SSLMethod):
    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        input_px: int,
        *,
        proj_dim: int = 1024,
        hidden_dim: int = 1024,
        lambda_param: float = 5e-3,
        distributed: bool = False,
    ) -> None:
        super().__init__(backbone, embed_dim, input_px)
        self.head = BarlowTwinsProjectionHead(embed_dim, hidden_dim, proj_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param, gather_distributed=distributed)

    def forward(self, views: list[torch.Tensor], progress: float):
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        return self.criterion(self.head(f0), self.head(f1)), f0.detach()
