"""MoCo v2 (Chen et al. 2020): contrast queries with an EMA key encoder and a memory bank
of past keys (lightly's NTXentLoss with a memory bank)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import MoCoProjectionHead
from lightly.models.utils import update_momentum
from torch import nn

from pathssl.pretrain.methods import register
from pathssl.pretrain.methods.base import SSLMethod, momentum_copy


@register("moco")
class MoCoV2(SSLMethod):
    uses_momentum = True
    backbone_copies = ("key_backbone",)
    momentum_network_name = "momentum key"

    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        input_px: int,
        *,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.2,
        memory_bank_size: int = 4096,
        distributed: bool = False,
    ) -> None:
        super().__init__(backbone, embed_dim, input_px)
        self.projection = MoCoProjectionHead(embed_dim, hidden_dim, proj_dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_projection = momentum_copy(self.projection)
        self.criterion = NTXentLoss(
            temperature=temperature, memory_bank_size=(memory_bank_size, proj_dim)
        )
        # lightly keeps the bank out of state_dict; exact resume needs it in checkpoints
        self.criterion.memory_bank._non_persistent_buffers_set.difference_update(
            {"bank", "bank_ptr"}
        )

    def forward(self, views: list[torch.Tensor], progress: float):
        f0 = self.backbone(views[0])
        query = self.projection(f0)
        with torch.no_grad():
            key = self.key_projection(self.key_backbone(views[1]))
        return self.criterion(query, key), f0.detach()

    @torch.no_grad()
    def momentum_update(self, momentum: float, *, backbone: bool = True) -> None:
        if backbone:
            update_momentum(self.backbone, self.key_backbone, m=momentum)
        update_momentum(self.projection, self.key_projection, m=momentum)
