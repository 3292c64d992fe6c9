"""Presets for public pathology foundation models: one short file each, in a registry.

A preset says how to build the architecture with timm and how the published checkpoint's
keys map onto it; `pathssl import-weights` turns a downloaded checkpoint into a bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    architecture: str
    timm_kwargs: dict[str, Any]
    embedding_dim: int
    input_size_px: int = 224
    target_mpp: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = "timm"
    strip_prefixes: tuple[str, ...] = ("module.", "backbone.", "encoder.", "model.")
    drop_prefixes: tuple[str, ...] = ("head.", "fc.")
    source_url: str = ""  # where users download the checkpoint (documentation only)
    layout: str = "timm"  # published key names: timm, transformers, conch-v1.5, swin-timm-0.5
    layer_norm_eps: float | None = None  # when the published model's differs from timm's 1e-6
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {}


def register(factory: Callable[[], Preset]) -> Callable[[], Preset]:
    preset = factory()
    PRESETS[preset.name] = preset
    return factory


def get_preset(name: str) -> Preset:
    from pathssl.errors import PathsslError

    if name not in PRESETS:
        raise PathsslError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


# Import the preset files so that they register themselves.
from pathssl.encoder.presets import (  # noqa: E402, F401
    conch_v1,
    conch_v1_5,
    ctranspath,
    h_optimus_0,
    h_optimus_1,
    hibou_l,
    lunit_dino_vits16,
    midnight,
    phikon,
    phikon_v2,
    prov_gigapath,
    resnet50,
    uni,
    uni2_h,
    virchow,
    virchow2,
)

__all__ = ["PRESETS", "Preset", "get_preset", "register"]
