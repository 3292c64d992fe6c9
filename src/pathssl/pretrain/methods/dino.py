"""DINO (Caron et al. 2021): self-distillation from an EMA teacher with multi-crop views and
a centred, sharpened teacher output. The exported encoder is the teacher."""

from __future__ import annotations

import torch
from lightly.loss import DINOLoss
from lightly.models.modules.heads import DINOProjectionHead
from lightly.models.utils import update_momentum
from torch import nn

from pathssl.pretrain.methods import register
from pathssl.pretrain.methods.base import SSLMethod, momentum_copy
from pathssl.tiles.augment import ViewSpec


@register("dino")
class DINO(SSLMethod):
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
        out_dim: int = 4096,
        hidden_dim: int = 512,
        bottleneck_dim: int = 128,
        n_local: int = 4,
        local_px: int = 0,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_fraction: float = 0.1,
        student_temp: float = 0.1,
        distributed: bool = False,
    ) -> None:
        super().__init__(backbone, embed_dim, input_px)
        self.n_local = int(n_local)
        self.local_px = int(local_px) or max(32, (input_px * 3 // 7) // 8 * 8)
        self.head = DINOProjectionHead(embed_dim, hidden_dim, bottleneck_dim, out_dim)
        self.teacher_backbone = momentum_copy(self.backbone)
        # weight-normed layers cannot be deep-copied: build the teacher head and copy weights
        self.teacher_head = DINOProjectionHead(embed_dim, hidden_dim, bottleneck_dim, out_dim)
        self.teacher_head.load_state_dict(self.head.state_dict())
        for p in self.teacher_head.parameters():
            p.requires_grad = False
        self.criterion = DINOLoss(
            output_dim=out_dim, teacher_temp=teacher_temp, student_temp=student_temp
        )
        self.teacher_temp, self.warmup_teacher_temp = teacher_temp, warmup_teacher_temp
        self.warmup_fraction = warmup_fraction

    def view_specs(self) -> list[ViewSpec]:
        glob = ViewSpec(size_px=self.input_px, scale=(0.32, 1.0))
        local = ViewSpec(size_px=self.local_px, scale=(0.05, 0.32))
        return [glob, glob] + [local] * self.n_local

    def forward(self, views: list[torch.Tensor], progress: float):
        with torch.no_grad():
            teacher_out = [self.teacher_head(self.teacher_backbone(v)) for v in views[:2]]
        feats = [self.backbone(v) for v in views]
        student_out = [self.head(f) for f in feats]
        ramp = min(1.0, progress / self.warmup_fraction) if self.warmup_fraction else 1.0
        temp = self.warmup_teacher_temp + ramp * (self.teacher_temp - self.warmup_teacher_temp)
        loss = self.criterion(teacher_out, student_out, teacher_temp=temp)
        return loss, feats[0].detach()

    @torch.no_grad()
    def momentum_update(self, momentum: float, *, backbone: bool = True) -> None:
        if backbone:
            update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.head, self.teacher_head, m=momentum)
