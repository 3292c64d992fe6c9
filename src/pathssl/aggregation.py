"""Slide embeddings from tile features. Mean pooling for now; trained aggregators plug in
behind the same interface."""

from __future__ import annotations

from typing import Protocol

import h5py
import numpy as np

CHUNK_TILES = 16_384  # tiles read at once, so that memory stays bounded


class SlideAggregator(Protocol):
    name: str

    def __call__(self, features: h5py.Dataset, coords_l0: np.ndarray) -> np.ndarray: ...


class MeanPooling:
    name = "mean"

    def __call__(self, features: h5py.Dataset, coords_l0: np.ndarray) -> np.ndarray:
        total = np.zeros(features.shape[1], np.float64)
        for start in range(0, features.shape[0], CHUNK_TILES):
            total += features[start : start + CHUNK_TILES].astype(np.float64).sum(axis=0)
        return (total / max(features.shape[0], 1)).astype(np.float32)
