"""Tile encoders: model bundles, presets for public foundation models, weight import.

The names below load on first use, so that `pathssl --help` and the presets registry do not
import PyTorch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EncoderBundle", "EncoderConfig", "load_bundle", "load_encoder", "resolve_model_dir"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pathssl.encoder import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'pathssl.encoder' has no attribute {name!r}")
