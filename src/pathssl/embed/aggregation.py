"""Slide embeddings from tile features: mean pooling, a Giga-SSL encoder trained with
`pathssl slide-ssl`, or a pretrained slide encoder (TITAN, FEATHER, ...) from local files.

Which one: `--slide-encoder NAME --slide-encoder-weights DIR`; else a pretrained slide
encoder inside the model directory (slide_encoder/slide_encoder.json naming the preset, its
weight files beside it); else a trained Giga-SSL encoder (slide_encoder.json at the top);
else the mean.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from pathssl.embed.options import EmbedOptions
from pathssl.encoder.bundle import EncoderBundle, EncoderConfig
from pathssl.errors import ModelBundleError, PathsslError
from pathssl.tiles.grid import TileGrid

log = logging.getLogger("pathssl")
CHUNK_TILES = 16_384  # tiles read at once, so that memory stays bounded
PRETRAINED_DIR = "slide_encoder"  # inside a model directory
MANIFEST = "slide_encoder.json"  # {"preset": "titan", "weights_sha256": "..." (optional)}


class SlideAggregator(Protocol):
    name: str

    def __call__(self, features: h5py.Dataset, grid_rc: np.ndarray) -> np.ndarray: ...


class MeanPooling:
    name = "mean"

    def __call__(self, features: h5py.Dataset | np.ndarray, grid_rc: np.ndarray) -> np.ndarray:
        total = np.zeros(features.shape[1], np.float64)
        for start in range(0, features.shape[0], CHUNK_TILES):
            total += features[start : start + CHUNK_TILES].astype(np.float64).sum(axis=0)
        return (total / max(features.shape[0], 1)).astype(np.float32)


class PretrainedSlideEncoder:
    """A registry preset with its weights loaded. It needs the tiles' level-0 positions and
    step (the grid), so it is called through `aggregate`."""

    def __init__(self, preset: Any, model: Any, sha256: str, device: str | None) -> None:
        self.preset, self.model, self.sha256 = preset, model.eval(), sha256
        self.name = self.preset_name = preset.name
        self.device = device

    def __call__(self, features: h5py.Dataset | np.ndarray, grid_rc: np.ndarray) -> np.ndarray:
        raise PathsslError(f"slide encoder {self.name} needs the tile grid: call aggregate()")

    def encode(self, features: np.ndarray, coords_l0_px: np.ndarray, step_l0_px: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.tensor(np.asarray(features, np.float32), device=self.device)
            xy = torch.tensor(np.asarray(coords_l0_px, np.int64), device=self.device)
            out = self.preset.encode(self.model, x, xy, int(step_l0_px))
        return out.float().cpu().numpy().reshape(-1)


def aggregate(
    aggregator: SlideAggregator, features: h5py.Dataset | np.ndarray, grid: TileGrid
) -> np.ndarray:
    """The slide embedding; a pretrained slide encoder gets each tile's level-0 top-left (x, y)
    and the grid step in level-0 pixels (TITAN's patch_size_lv0)."""
    if not isinstance(aggregator, PretrainedSlideEncoder):
        return aggregator(features, grid.grid_rc)
    coords, cap = grid.coords_l0, aggregator.preset.max_tiles
    if cap is not None and len(coords) > cap:  # features.h5 keeps every tile
        log.warning(
            "slide encoder %s takes at most %d tiles: %d of the %d evenly chosen for the slide "
            "embedding",
            aggregator.name,
            cap,
            cap,
            len(coords),
        )
        pick = np.unique(np.linspace(0, len(coords) - 1, cap).round().astype(int))
        features, coords = np.asarray(features)[pick], coords[pick]
    return aggregator.encode(features, coords, grid.stride_l0_px)


def tiles_taken(aggregator: SlideAggregator, tiles: int) -> int:
    """How many of a slide's tiles go into its embedding (all but for a capped slide encoder),
    for the run record: a subsample is never silent."""
    cap = aggregator.preset.max_tiles if isinstance(aggregator, PretrainedSlideEncoder) else None
    return tiles if cap is None else min(tiles, cap)


def default_aggregator(bundle_dir: Path) -> SlideAggregator:
    """The bundle's trained slide encoder when it has one, mean pooling otherwise."""
    from pathssl.slide_ssl.bundle import load_slide_aggregator

    return load_slide_aggregator(bundle_dir) or MeanPooling()


def choose_aggregator(
    bundle: EncoderBundle, options: EmbedOptions | None = None
) -> SlideAggregator:
    """The aggregator for a run (see the module's docstring for the order)."""
    options = options or EmbedOptions()
    if options.slide_encoder:
        weights = Path(options.slide_encoder_weights or "")
        return load_pretrained(options.slide_encoder, weights, bundle.config, options.device)
    manifest = Path(bundle.path) / PRETRAINED_DIR / MANIFEST
    if manifest.is_file():
        if (Path(bundle.path) / MANIFEST).is_file():
            raise ModelBundleError(
                f"{bundle.path}: holds a trained slide encoder ({MANIFEST}) and a pretrained one "
                f"({PRETRAINED_DIR}/{MANIFEST}); keep one of them"
            )
        return bundled_slide_encoder(manifest, bundle.config, options.device)
    return default_aggregator(bundle.path)


def bundled_slide_encoder(
    manifest: Path, tiles: EncoderConfig, device: str | None = None
) -> PretrainedSlideEncoder:
    """The pretrained slide encoder a model directory holds (slide_encoder/slide_encoder.json)."""
    try:
        record = json.loads(manifest.read_text())
        name = record["preset"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelBundleError(
            f'{manifest}: not a slide-encoder manifest ({exc}); write {{"preset": "titan"}} '
            "naming a preset of docs/slide-encoders.md"
        ) from exc
    encoder = load_pretrained(name, manifest.parent, tiles, device)
    expected = record.get("weights_sha256")
    if expected and expected != encoder.sha256:
        raise ModelBundleError(
            f"{manifest.parent}: the weight files' sha256 {encoder.sha256[:12]} does not match "
            f"{MANIFEST} ({str(expected)[:12]}); copy the files again or update the manifest"
        )
    return encoder


def load_pretrained(
    name: str, folder: Path, tiles: EncoderConfig, device: str | None = None
) -> PretrainedSlideEncoder:
    """Preset `name` with its weights from `folder`, after checking that the tile encoder fits."""
    from pathssl.aggregation.local_weights import folder_sha256, weight_file
    from pathssl.aggregation.registry import get_slide_encoder, pairing_problem
    from pathssl.encoder.inference import DeviceSettings

    preset = get_slide_encoder(name)
    problem = pairing_problem(
        preset, tiles.name, tiles.embedding_dim, tiles.input_size_px, tiles.target_mpp
    )
    if problem:
        raise ModelBundleError(problem)
    for file_name in preset.weight_files:  # one line naming the first file missing
        weight_file(folder, file_name, preset.name, preset.download)
    model = preset.build()
    preset.load_weights(model, folder)
    dev = str(DeviceSettings.auto(device).device)
    return PretrainedSlideEncoder(
        preset, model.to(dev), folder_sha256(folder, preset.weight_files), dev
    )
