"""Embedding slides: options -> plan (per slide) -> slide (stage by stage) -> run (many slides,
resume, summary). The one library entry point that `pathssl embed` and process.py call.

Names load on first use, so that importing pathssl.embed.arguments (the command line) does not
load PyTorch before runtime.configure_openmp has run."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbedOptions": "pathssl.embed.options",
    "SlidePlan": "pathssl.embed.plan",
    "plan_slide": "pathssl.embed.plan",
    "Shard": "pathssl.embed.shard",
    "RunSettings": "pathssl.embed.run",
    "SlideReport": "pathssl.embed.run",
    "embed_slides": "pathssl.embed.run",
    "embed_slide": "pathssl.embed.slide",
    "OutputLayout": "pathssl.outputs.slide_outputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pathssl.embed' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
