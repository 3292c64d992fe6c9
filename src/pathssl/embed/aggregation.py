"""Slide embeddings from tile features. Mean pooling for now; trained aggregators plug in
behind the same interface."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

CHUNK_TILES = 16_384  # tiles read at once, so that memory stays bounded


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


def default_aggregator(bundle_dir: Path) -> SlideAggregator:
    """The bundle's trained slide encoder when it has one, mean pooling otherwise."""
    from pathssl.slide_ssl.bundle import load_slide_aggregator

    return load_slide_aggregator(bundle_dir) or MeanPooling()
