"""Submanifold sparse convolution on the tile grid, in plain PyTorch.

Tiles are points on an integer grid (row, col). A 3x3 submanifold convolution gives each
tile a weighted sum over the tiles present among its 8 neighbours and itself (one weight
matrix per offset), so cost and memory grow with the number of tiles, never with the area of
the slide. Pooling merges tiles into cells of a coarser grid (coordinates // 2), which is
how context spreads beyond immediate neighbours, as in SparseConvNet.
"""

from __future__ import annotations

import torch
from torch import nn

OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]


def neighbour_index(coords: torch.Tensor) -> torch.Tensor:
    """(N, 2) integer grid coords -> (9, N) index of the tile at each 3x3 offset, or N where
    there is none (callers append a zero row at index N)."""
    n = coords.shape[0]
    coords = coords.long()
    base = coords.min(dim=0).values - 1
    c = coords - base
    width = int(c[:, 1].max()) + 2
    keys = c[:, 0] * width + c[:, 1]
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    out = torch.full((len(OFFSETS), n), n, dtype=torch.long, device=coords.device)
    for i, (dr, dc) in enumerate(OFFSETS):
        query = (c[:, 0] + dr) * width + (c[:, 1] + dc)
        pos = torch.searchsorted(sorted_keys, query).clamp(max=n - 1)
        found = sorted_keys[pos] == query
        out[i] = torch.where(found, order[pos], torch.full_like(pos, n))
    return out


class SubmanifoldConv(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(len(OFFSETS), dim_in, dim_out))
        self.bias = nn.Parameter(torch.zeros(dim_out))
        nn.init.kaiming_uniform_(self.weight.view(-1, dim_out).T, a=5**0.5)
        self.weight.data /= len(OFFSETS) ** 0.5

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])
        gathered = padded[neighbours.T].reshape(x.shape[0], -1)  # (N, 9 * dim_in)
        return gathered @ self.weight.reshape(-1, self.weight.shape[2]) + self.bias


def pool_grid(
    x: torch.Tensor, coords: torch.Tensor, factor: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average tiles falling in the same cell of a grid `factor` times coarser."""
    cells = torch.div(coords.long(), factor, rounding_mode="floor")
    unique, inverse = torch.unique(cells, dim=0, return_inverse=True)
    summed = x.new_zeros(unique.shape[0], x.shape[1]).index_add_(0, inverse, x)
    counts = torch.bincount(inverse, minlength=unique.shape[0]).clamp(min=1).to(x.dtype)
    return summed / counts[:, None], unique
