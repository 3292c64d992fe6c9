"""BYOL (Grill et al. 2020): an online network predicts an EMA target network's projection.
The exported encoder is the target (teacher) network."""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import update_momentum
from torch import nn

from pathssl.pretrain.methods import register
from pathssl.pretrain.methods.base import SSLMethod, momentum_copy


@register("byol")
class BYOL(SSLMethod):
    uses_momentum = True
    backbone_copies = ("teacher_backbone",)
    default_network = "momentum"
    momentum_network_name = "teacher"

    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        input_px: int,
        *,
        proj_dim: int = 128,
        hidden_dim: int = 1024,
        distributed: bool = False,
    ) -> None:
        super().__init__(backbone, embed_dim, input_px)
        self.projection = BYOLProjectionHead(embed_dim, hidden_dim, proj_dim)
        self.prediction = BYOLPredictionHead(proj_dim, hidden_dim, proj_dim)
        self.teacher_backbone = momentum_copy(self.backbone)
        self.teacher_projection = momentum_copy(self.projection)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, views: list[torch.Tensor], progress: float):
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        p0, p1 = self.prediction(self.projection(f0)), self.prediction(self.projection(f1))
        with torch.no_grad():
            z0 = self.teacher_projection(self.teacher_backbone(views[0]))
            z1 = self.teacher_projection(self.teacher_backbone(views[1]))
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        return loss, f0.detach()

    @torch.no_grad()
    def momentum_update(self, momentum: float, *, backbone: bool = True) -> None:
        if backbone:
            update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.projection, self.teacher_projection, m=momentum)
