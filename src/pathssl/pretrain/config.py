"""Training configuration: a YAML file per method, overridable with --set key=value."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathssl.training.overrides import build_config


@dataclass
class PretrainConfig:
    method: str = "simclr"
    architecture: str = "resnet18"  # any timm model
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
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

    @classmethod
    def from_yaml(cls, path: Path | None, overrides: Sequence[str] = ()) -> PretrainConfig:
        """The YAML file at `path` (None: the defaults), then `--set key=value` overrides."""
        return build_config(cls, path=path, overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
