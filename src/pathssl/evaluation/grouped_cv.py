"""Grouped cross-validation and a group bootstrap for the visible benchmark (#23).

Images are cut into tiles at each encoder's field of view; every tile is a test case, and all
tiles of one group (patient or source image) fall in one fold, so that no probe is tested on
a group it was trained on. Folds deal each class's groups round in turn (stratified by group).
Balanced accuracy is of the predictions pooled over folds. Its 95 % interval resamples groups
with replacement within each class (a cluster bootstrap: tiles of one image are not
independent); the same draws serve every encoder, so that differences are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.evaluation.tiles import linear_probe_predictions, tile_image


def grouped_folds(group_labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold per group: each class's groups shuffled and dealt round the k folds, carrying on
    where the previous class stopped."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(group_labels), np.int64)
    dealt = 0
    for c in np.unique(group_labels):
        idx = rng.permutation(np.flatnonzero(group_labels == c))
        folds[idx] = (dealt + np.arange(len(idx))) % k
        dealt += len(idx)
    return folds


@torch.inference_mode()
def tile_features(
    module: torch.nn.Module, preprocess, paths: Sequence[Path], crop_px: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(features per tile, image index per tile): each image cut into crop_px squares (whole
    when None or smaller), each square preprocessed to the encoder's input."""
    module.eval()
    feats, owner, batch = [], [], []
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        for crop in tile_image(rgb, crop_px) if crop_px else [rgb]:
            batch.append(preprocess(crop))
            owner.append(i)
        if len(batch) >= 64 or (i == len(paths) - 1 and batch):
            feats.append(module(torch.stack(batch)).float().numpy())
            batch = []
    return np.concatenate(feats), np.asarray(owner, np.int64)


def cross_validated_correct(
    features: np.ndarray, tile_labels: np.ndarray, tile_folds: np.ndarray
) -> np.ndarray:
    """1.0 where a tile's probe (trained on the other folds' tiles) predicted its label."""
    correct = np.zeros(len(tile_labels))
    for fold in np.unique(tile_folds):
        test = tile_folds == fold
        pred = linear_probe_predictions(features[~test], tile_labels[~test], features[test])
        correct[test] = pred == tile_labels[test]
    return correct


def group_sums(values: np.ndarray, tile_groups: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(tile_groups, weights=values, minlength=n_groups)


def balanced_accuracy(n: np.ndarray, k: np.ndarray, group_labels: np.ndarray) -> float:
    """Balanced accuracy from tiles (n) and correct tiles (k) per group."""
    return float(
        np.mean(
            [
                k[group_labels == c].sum() / n[group_labels == c].sum()
                for c in np.unique(group_labels)
            ]
        )
    )


def bootstrap_draws(group_labels: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Per class: (n_boot, groups of the class) group indices drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = []
    for c in np.unique(group_labels):
        idx = np.flatnonzero(group_labels == c)
        draws.append(idx[rng.integers(0, len(idx), (n_boot, len(idx)))])
    return draws


def bootstrap_balanced_accuracy(
    n: np.ndarray, k: np.ndarray, draws: list[np.ndarray]
) -> np.ndarray:
    """Balanced accuracy of each bootstrap replicate (same draws for every encoder)."""
    per_class = [k[d].sum(axis=1) / np.maximum(n[d].sum(axis=1), 1e-12) for d in draws]
    return np.mean(per_class, axis=0)


def interval_95(replicates: np.ndarray) -> list[float]:
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    return [float(lo), float(hi)]
