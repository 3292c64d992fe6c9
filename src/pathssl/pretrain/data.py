"""Training samples: views of tiles drawn on the fly from `sources.TileSource`.

Every sample is a pure function of (seed, global sample index): the slide, the resolution,
the location and the augmentations are drawn from a generator seeded with that index. So
ranks get disjoint index ranges (no duplicated samples), workers can be any number, and a
resumed run continues exactly where it stopped.

Tissue and reading reuse the embedding pipeline's code (open_slide, resolve_mpp,
detect_tissue, plan_tiles): there is no second copy of that logic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from pathssl.pretrain.sources import TileSource
from pathssl.tiles.augment import ViewSpec, make_view

__all__ = [
    "PretrainDataset",
    "RankBatchSampler",
    "TileSource",
    "collate_views",
    "sample_generator",
]


def sample_generator(seed: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + index) % (2**63 - 1))
    return g


class PretrainDataset(torch.utils.data.Dataset):
    """Index -> list of augmented views (float tensors in [0, 1])."""

    def __init__(self, source: TileSource, views: Sequence[ViewSpec], seed: int) -> None:
        self.source, self.views, self.seed = source, list(views), seed

    def __len__(self) -> int:  # indices are unbounded; the sampler decides which are used
        return 2**62

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        g = sample_generator(self.seed, index)
        tile = self.source.sample(g)
        return [make_view(tile, spec, g) for spec in self.views]


class RankBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of global sample indices for one rank: step s, rank r, slot j ->
    (s * world + r) * batch + j. Disjoint across ranks; starts at any step (resume)."""

    def __init__(self, batch_size: int, rank: int, world: int, start_step: int, steps: int) -> None:
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.start_step, self.steps = start_step, steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            base = (step * self.world + self.rank) * self.batch_size
            yield list(range(base, base + self.batch_size))

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)


def collate_views(batch: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack([sample[v] for sample in batch]) for v in range(len(batch[0]))]
