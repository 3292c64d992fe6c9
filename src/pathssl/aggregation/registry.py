"""The registry of pretrained slide encoders: one short preset file each, weights from a local
folder the user downloaded (never a network call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pathssl.errors import PathsslError

EncodeFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class SlideEncoderPreset:
    """A pretrained slide encoder and the tiles it was trained on.

    encode(model, features (N, tile_embedding_dim) float32, coords_level0_px (N, 2) int64
    top-left x, y, patch_size_level0_px) returns the slide embedding (embedding_dim,).
    """

    name: str
    description: str
    tile_encoders: tuple[str, ...]  # accepted tile preset / bundle config names
    tile_size_px: int  # tile size at target_mpp the slide encoder was trained on
    target_mpp: float
    tile_embedding_dim: int
    embedding_dim: int
    weight_files: tuple[str, ...]  # exact file names expected in the user's local folder
    download: str  # where to get them (documentation only)
    licence: str
    gated: bool
    build: Callable[[], torch.nn.Module]  # architecture with random weights, no network
    load_weights: Callable[[torch.nn.Module, Path], None]  # from the local folder
    encode: EncodeFn
    mpp_tolerance: float = 0.1  # relative: 0.5 mpp accepts 0.45-0.55


SLIDE_ENCODERS: dict[str, SlideEncoderPreset] = {}


def register(preset: SlideEncoderPreset | Callable[[], SlideEncoderPreset]) -> SlideEncoderPreset:
    """Add a preset (or a function returning one) to the registry and return the preset."""
    if not isinstance(preset, SlideEncoderPreset):
        preset = preset()
    SLIDE_ENCODERS[preset.name] = preset
    return preset


def get_slide_encoder(name: str) -> SlideEncoderPreset:
    import pathssl.aggregation.presets  # noqa: F401  (the preset files register themselves)

    if name not in SLIDE_ENCODERS:
        choices = ", ".join(sorted(SLIDE_ENCODERS))
        raise PathsslError(f"unknown slide encoder {name!r}; choose one of {choices}")
    return SLIDE_ENCODERS[name]


def slide_encoder_names() -> list[str]:
    import pathssl.aggregation.presets  # noqa: F401

    return sorted(SLIDE_ENCODERS)
