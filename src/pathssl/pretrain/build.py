"""A method's networks and optimiser, built from its config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.methods import METHODS, SSLMethod


def encoder_config(cfg: PretrainConfig, embedding_dim: int = 0, **extra: Any) -> Any:
    """The backbone of `cfg` described as a bundle's EncoderConfig (built as bundles are:
    timm, named layer classes, pooling, LayerNorm eps), so that export and `--init` agree."""
    from pathssl.encoder.bundle import EncoderConfig

    values: dict[str, Any] = dict(
        name=f"{cfg.architecture}-{cfg.method}",
        architecture=cfg.architecture,
        embedding_dim=embedding_dim,
        input_size_px=cfg.input_px,
        target_mpp=float(cfg.target_mpps[0]),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        trained=False,
        provenance="",
        timm_kwargs=dict(cfg.timm_kwargs),
        pooling=cfg.pooling,
        layer_norm_eps=cfg.layer_norm_eps,
    )
    values.update(extra)
    return EncoderConfig(**values)


def feature_dim(backbone: nn.Module) -> int:
    """Features per tile of a backbone built by `build_module`."""
    from pathssl.encoder.bundle import TokenPooling

    if isinstance(backbone, TokenPooling):  # class token + mean patch token
        return 2 * int(backbone.backbone.num_features)
    # head_hidden_size: the pooled output where a model has a pre-logits layer (MobileNetV3)
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def build_method(cfg: PretrainConfig, distributed: bool = False) -> SSLMethod:
    """The method with a randomly initialised backbone (`cfg.seed`); a run started from a
    bundle loads its weights at the start (`init_bundle.load_parent_weights`)."""
    from pathssl.encoder.bundle import build_module

    if cfg.method not in METHODS:
        raise PathsslError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    backbone = build_module(encoder_config(cfg))
    return METHODS[cfg.method](
        backbone,
        feature_dim(backbone),
        cfg.input_px,
        distributed=distributed,
        **cfg.method_kwargs,
    )


def param_groups(model: nn.Module, backbone_lr_scale: float | None = None) -> list[dict[str, Any]]:
    """Weights decay; biases and norm parameters (1-d) do not (`no_wd`, kept by schedules).
    With `backbone_lr_scale` (a run started from a bundle), the backbone's parameters form
    groups of their own whose learning rate is scaled by it (`lr_scale`)."""

    def split(params: list[nn.Parameter], **extra: Any) -> list[dict[str, Any]]:
        decay = [p for p in params if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
        return [
            {"params": decay, **extra},
            {"params": no_decay, "weight_decay": 0.0, "no_wd": True, **extra},
        ]

    if backbone_lr_scale is None:
        return split(list(model.parameters()))
    own = {id(p) for p in model.backbone.parameters()}
    backbone = [p for p in model.parameters() if id(p) in own]
    heads = [p for p in model.parameters() if id(p) not in own]
    return split(backbone, lr_scale=float(backbone_lr_scale)) + split(heads)


def make_optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.init_lr_scale if cfg.init else None)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise PathsslError(f"unknown optimizer {cfg.optimizer!r}; set optimizer to adamw or sgd")
