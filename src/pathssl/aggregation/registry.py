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
    mpp_tolerance: float = 0.05  # relative, on the tile side in microns (see pairing_problem)
    # most tiles one slide embedding takes (memory, e.g. TITAN's N x N attention bias); the
    # tiles beyond are left out of the slide embedding only, by even subsampling
    max_tiles: int | None = None


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


def pairing_problem(
    preset: SlideEncoderPreset,
    tile_encoder: str,
    tile_embedding_dim: int,
    tile_size_px: int,
    tile_mpp: float,
) -> str | None:
    """One line when the tile encoder's features do not fit the slide encoder, else None.

    Tiles must come from an accepted tile encoder and cover the same square of tissue (side
    in microns, within mpp_tolerance): a tile encoder may read fewer pixels at a coarser
    resolution (CONCH v1.5: 448 px at 0.571 um/px for TITAN's 512 px at 0.5 um/px).
    """
    side_um = preset.tile_size_px * preset.target_mpp
    tile_side_um = tile_size_px * tile_mpp
    fits = (
        tile_encoder in preset.tile_encoders
        and tile_embedding_dim == preset.tile_embedding_dim
        and abs(tile_side_um - side_um) <= preset.mpp_tolerance * side_um
    )
    if fits:
        return None
    return (
        f"slide encoder {preset.name} needs {' or '.join(preset.tile_encoders)} tiles "
        f"({preset.tile_embedding_dim}-d) of {preset.tile_size_px} px at {preset.target_mpp:g} "
        f"mpp ({side_um:g} um); the model is {tile_encoder} ({tile_embedding_dim}-d) at "
        f"{tile_size_px} px, {tile_mpp:g} mpp ({tile_side_um:g} um); give a "
        f"{preset.tile_encoders[0]} bundle (`pathssl import-weights --preset "
        f"{preset.tile_encoders[0]}`) with --model"
    )
