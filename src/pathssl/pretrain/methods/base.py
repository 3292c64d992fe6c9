"""What every method provides to the training loop."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pathssl.errors import PathsslError
from pathssl.tiles.augment import ViewSpec


class SSLMethod(nn.Module):
    name = "base"
    uses_momentum = False  # whether an EMA teacher/key encoder is updated after each step
    # attributes holding momentum (EMA) copies of `backbone`: teacher, key encoder
    backbone_copies: tuple[str, ...] = ()
    # which network `pathssl export` ships unless told: "online" (the student) or "momentum"
    # (the EMA copy, backbone_copies[0]); and what the method calls its EMA copy
    default_network = "online"
    momentum_network_name = "momentum"

    def __init__(self, backbone: nn.Module, embed_dim: int, input_px: int, **kwargs: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        self.input_px = input_px

    def view_specs(self) -> list[ViewSpec]:
        """Two global views, as in SimCLR, BYOL, MoCo v2 and Barlow Twins."""
        return [ViewSpec(size_px=self.input_px, scale=(0.4, 1.0))] * 2

    def forward(
        self, views: list[torch.Tensor], progress: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, backbone embeddings of the first view, for the collapse monitor)."""
        raise NotImplementedError

    def backbones(self) -> list[nn.Module]:
        """The backbone and its momentum copies: what a bundle initialises (`--init`) and
        `freeze_backbone_steps` freezes."""
        return [self.backbone, *(getattr(self, name) for name in self.backbone_copies)]

    @torch.no_grad()
    def momentum_update(self, momentum: float, *, backbone: bool = True) -> None:
        """EMA of the student into the teacher (heads; the backbone too unless `backbone`
        is False: while it is frozen)."""

    def networks(self) -> tuple[str, ...]:
        """The networks a bundle can be exported from."""
        return ("online", "momentum") if self.backbone_copies else ("online",)

    def export_backbone(self, network: str) -> nn.Module:
        """The encoder to ship: the "online" network or its "momentum" (EMA) copy."""
        if network not in self.networks():
            raise PathsslError(
                f"{self.name} has no {network} network: export one of {', '.join(self.networks())}"
            )
        return self.backbone if network == "online" else getattr(self, self.backbone_copies[0])


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy for a momentum (EMA) teacher or key encoder."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad = False
    return twin
