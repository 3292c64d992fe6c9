"""Training configuration: a YAML file per method, overridable with --set key=value, and
optionally a model bundle to continue from (`init`, `pathssl pretrain --init BUNDLE`), which
then supplies the backbone's architecture and preprocessing (see `pretrain.init_bundle`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pathssl.training.overrides import build_config, given_keys

# The keys a bundle owns (`init`): its backbone's architecture and its preprocessing. With a
# bundle, `--set KEY=null` for one of them means "the bundle's value" (e.g. over a recipe).
BUNDLE_KEYS = (
    "architecture",
    "timm_kwargs",
    "pooling",
    "layer_norm_eps",
    "input_px",
    "mean",
    "std",
    "target_mpps",
)


def _from_bundle(overrides: Sequence[str]) -> set[str]:
    """The bundle's keys whose last override is null."""
    last: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in BUNDLE_KEYS:
            try:
                last[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                last[key] = value
    return {key for key, value in last.items() if value is None}


@dataclass
class PretrainConfig:
    method: str = "simclr"
    architecture: str = "resnet18"  # any timm model
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    pooling: str = "timm"  # as in a bundle: "timm" (the model's pooled output) or "cls+mean"
    layer_norm_eps: float | None = None  # as in a bundle: set on every LayerNorm when not None
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)  # ViewSpec overrides for every view
    input_px: int = 224
    target_mpps: list[float] = field(default_factory=lambda: [0.5])  # several = multi field of view
    manifest: str | None = None  # CSV of slides: path[,stain][,mpp]
    image_dirs: list[str] = field(default_factory=list)  # folders of tile/region images
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    batch_size: int = 64  # per process
    steps: int = 1000
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3  # peak, for a global batch of 256 (scaled linearly)
    min_lr: float = 1e-6
    warmup_steps: int = 100
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum: float = 0.996  # EMA teacher/key encoder, start
    momentum_end: float = 1.0
    grad_clip: float = 3.0
    amp: bool = True  # mixed precision on GPU (bf16 where supported, else fp16 with a scaler)
    channels_last: bool = True  # NHWC convolutions: 1.25x training images/s on CPU (measured)
    seed: int = 0
    num_workers: int = 2
    checkpoint_every: int = 100
    # stop (checkpointed) when the collapse indicator stays below this for 5 log rows in a row
    collapse_threshold: float = 0.05
    log_every: int = 10
    output: str = "runs/pretrain"
    # Continuing from a model bundle (`--init BUNDLE`): the backbone (student and teachers)
    # starts from its weights, and architecture, timm_kwargs, pooling, layer_norm_eps,
    # input_px, mean, std and target_mpps[0] come from it; heads start fresh.
    init: str | None = None
    init_lr_scale: float = 1.0  # times the backbone's learning rate (with init only)
    freeze_backbone_steps: int = 0  # the backbone is not updated for the first N steps
    # filled in from `init` (name, weights_sha256, path of the bundle): not to be set
    parent: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(
        cls,
        path: Path | None,
        overrides: Sequence[str] = (),
        *,
        init: str | Path | None = None,
    ) -> PretrainConfig:
        """The YAML file at `path` (None: the defaults), then `--set key=value` overrides,
        then `init` (a bundle folder, as `--init` gives it). With a bundle (from any of them),
        the keys it owns (BUNDLE_KEYS) are taken from it where the file and overrides leave
        them unset (or `--set` them to null), and one they set to another value is an error."""
        nulls = _from_bundle(overrides)
        rest = [o for o in overrides if o.partition("=")[0] not in nulls]
        cfg = build_config(cls, path=path, overrides=rest)
        if init is not None:
            cfg = dataclasses.replace(cfg, init=str(init))
        if not cfg.init:  # no bundle: a null is an ordinary value (or its error)
            return build_config(cls, path=path, overrides=overrides) if nulls else cfg
        from pathssl.pretrain.init_bundle import resolve_init

        return resolve_init(cfg, given=given_keys(path, rest) - nulls)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
