"""SimCLR (Chen et al. 2020): NT-Xent between two views through a projection head."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from torch import nn

from pathssl.pretrain.methods import register
from pathssl.pretrain.methods.base import SSLMethod


@register("simclr")
class SimCLR(SSLMethod):
    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        input_px: int,
        *,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.1,
        distributed: bool = False,
    ) -> None:
        super().__init__(backbone, embed_dim, input_px)
        self.head = SimCLRProjectionHead(embed_dim, hidden_dim, proj_dim)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=distributed)

    def forward(self, views: list[torch.Tensor], progress: float):
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        loss = self.criterion(self.head(f0), self.head(f1))
        return loss, f0.detach()
