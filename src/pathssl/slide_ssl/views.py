"""Views of a slide for slide-level SSL: a random subset of its tiles, taken from one of its
augmented copies of tile embeddings, with the tile grid rotated, flipped and translated."""

from __future__ import annotations

import numpy as np
import torch


def augment_coords(coords: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Rotation by a multiple of 90 degrees, a flip and an integer translation of the grid
    (translation changes which tiles pooling merges). Arbitrary angles and scaling would move
    tiles off the integer grid the sparse convolution works on, so they are not used."""
    r, c = coords[:, 0].clone(), coords[:, 1].clone()
    for _ in range(int(torch.randint(0, 4, (), generator=g))):
        r, c = c, -r
    if torch.rand((), generator=g) < 0.5:
        c = -c
    shift = torch.randint(0, 4, (2,), generator=g)
    out = torch.stack([r + shift[0], c + shift[1]], dim=1)
    return out - out.min(dim=0).values


def sample_view(
    features: np.ndarray | torch.Tensor,
    coords: np.ndarray,
    n_tiles: int,
    g: torch.Generator,
    augment: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """features: (K, N, C) augmented copies, or (N, C). Returns (n, C) and (n, 2) int."""
    feats = torch.as_tensor(features)
    if feats.ndim == 3:
        feats = feats[int(torch.randint(0, feats.shape[0], (), generator=g))]
    n = feats.shape[0]
    idx = torch.randperm(n, generator=g)[:n_tiles].sort().values
    xy = torch.as_tensor(coords)[idx].long()
    if augment:
        xy = augment_coords(xy, g)
    return feats[idx].float(), xy
