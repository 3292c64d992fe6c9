"""pathssl: self-supervised learning for digital pathology."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

__version__ = "0.1.0"


def load_encoder(
    model_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Callable[[Image.Image], torch.Tensor]]:
    """`(module, preprocess)` for a model bundle: `preprocess` maps a PIL RGB image of any
    size to the normalised (3, H, W) tensor the module expects; the module maps (N, 3, H, W)
    to (N, C) features. See pathssl.encoder.bundle.load_encoder."""
    from pathssl.encoder.bundle import load_encoder as _load_encoder

    return _load_encoder(model_dir)


__all__ = ["__version__", "load_encoder"]
