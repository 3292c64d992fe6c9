"""Tile encoders: model bundles, presets for public foundation models, weight import."""

from pathssl.encoder.bundle import (
    EncoderBundle,
    EncoderConfig,
    load_bundle,
    load_encoder,
    resolve_model_dir,
)

__all__ = ["EncoderBundle", "EncoderConfig", "load_bundle", "load_encoder", "resolve_model_dir"]
