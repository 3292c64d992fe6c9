"""A method's networks and optimiser, built from its config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.methods import METHODS, SSLMethod


def build_method(cfg: PretrainConfig, distributed: bool = False) -> SSLMethod:
    import timm

    if cfg.method not in METHODS:
        raise PathsslError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    backbone = timm.create_model(
        cfg.architecture, pretrained=False, num_classes=0, **cfg.timm_kwargs
    )
    return METHODS[cfg.method](
        backbone,
        backbone.num_features,
        cfg.input_px,
        distributed=distributed,
        **cfg.method_kwargs,
    )


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weights decay; biases and norm parameters (1-d) do not (`no_wd`, kept by schedules)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "no_wd": True}]


def make_optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise PathsslError(f"unknown optimizer {cfg.optimizer!r}; set optimizer to adamw or sgd")
