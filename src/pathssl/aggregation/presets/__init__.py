"""Pretrained slide-encoder presets: importing a module registers its preset.
One import line per preset module."""

from pathssl.aggregation.presets import (
    chief,  # noqa: F401
    feather,  # noqa: F401
    gigapath_slide,  # noqa: F401
    prism,  # noqa: F401
    titan,  # noqa: F401
)
