"""Training tiles straight from slides (and folders of images), sampled on the fly.

Every sample is a pure function of (seed, global sample index): the slide, the resolution,
the location and the augmentations are drawn from a generator seeded with that index. So
ranks get disjoint index ranges (no duplicated samples), workers can be any number, and a
resumed run continues exactly where it stopped.

Tissue and reading reuse the embedding pipeline's code (open_slide, resolve_mpp,
detect_tissue, plan_tiles): there is no second copy of that logic.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.loading import resize_tile
from pathssl.pretrain.augment import ViewSpec, make_view
from pathssl.slide.reader import Slide, open_slide
from pathssl.slide.resolution import resolve_mpp
from pathssl.tiling import TileGrid, TilingSpec, plan_tiles
from pathssl.tissue import detect_tissue, render_thumbnail

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    stain: str = ""
    mpp: float | None = None


def read_manifest(path: Path) -> list[ManifestRow]:
    """CSV with a `path` column and optional `stain` (H&E, IHC, ...) and `mpp` columns.
    Relative paths are taken from the manifest's folder."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise PathsslError(f"{path}: cannot read manifest ({exc})") from exc
    if not rows or "path" not in rows[0]:
        raise PathsslError(f"{path}: manifest needs a header with a 'path' column")
    out = []
    for row in rows:
        p = Path(row["path"])
        p = p if p.is_absolute() else path.parent / p
        mpp = row.get("mpp") or None
        out.append(ManifestRow(p, row.get("stain", "") or "", float(mpp) if mpp else None))
    return out


@dataclass(frozen=True)
class SlideSites:
    """Where training tiles may be read from one slide at one resolution."""

    path: Path
    grid: TileGrid
    slide_size: tuple[int, int]


def plan_slide_sites(
    row: ManifestRow, target_mpps: Sequence[float], source_px: int, min_tissue: float = 0.5
) -> list[SlideSites]:
    with open_slide(row.path) as slide:
        res = resolve_mpp(slide, row.mpp)
        tissue = detect_tissue(render_thumbnail(slide, res.mpp))
        out = []
        for mpp in target_mpps:
            spec = TilingSpec(mpp, source_px, min_tissue_fraction=min_tissue)
            grid = plan_tiles(slide.levels, res.mpp, tissue, spec, str(row.path))
            out.append(SlideSites(row.path, grid, slide.dimensions))
        return out


class TileSource:
    """Slides (balanced: each slide equally likely) and images (each image one item)."""

    def __init__(
        self,
        manifest: Path | None,
        image_dirs: Sequence[Path],
        target_mpps: Sequence[float],
        source_px: int,
    ) -> None:
        self.source_px = source_px
        self.slides: list[list[SlideSites]] = []
        if manifest is not None:
            for row in read_manifest(manifest):
                self.slides.append(plan_slide_sites(row, target_mpps, source_px))
        self.images: list[Path] = sorted(
            p
            for d in image_dirs
            for p in Path(d).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.slides and not self.images:
            raise PathsslError("no training data: give a slide manifest or image folders")
        self._handles: dict[Path, Slide] = {}
        self._pixels: dict[Path, np.ndarray] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.slides) + len(self.images)

    def describe(self) -> list[str]:
        rows = [f"{s[0].path} ({len(s[0].grid)} tissue sites)" for s in self.slides]
        return rows + [str(p) for p in self.images]

    def _slide(self, path: Path) -> Slide:
        if self._pid != os.getpid():  # a forked worker opens its own handles
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open_slide(path)
        return self._handles[path]

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._pixels:
            with Image.open(path) as im:
                self._pixels[path] = np.asarray(im.convert("RGB"))
        return self._pixels[path]

    def sample(self, g: torch.Generator) -> torch.Tensor:
        """A random source tile, uint8 (3, source_px, source_px)."""
        item = int(torch.randint(0, len(self), (), generator=g))
        if item < len(self.slides):
            sites = self.slides[item][
                int(torch.randint(0, len(self.slides[item]), (), generator=g))
            ]
            grid = sites.grid
            i = int(torch.randint(0, len(grid), (), generator=g))
            row, col = grid.grid_rc[i]
            # jitter within one grid step so locations are not quantised to the grid
            dx, dy = (torch.rand(2, generator=g) - 0.5) * grid.stride_l0_px
            w, h = sites.slide_size
            x = int(np.clip(col * grid.stride_l0_px + dx, 0, w - grid.stride_l0_px))
            y = int(np.clip(row * grid.stride_l0_px + dy, 0, h - grid.stride_l0_px))
            rgb = self._slide(sites.path).read_region(
                x, y, grid.level, grid.read_size_px, grid.read_size_px
            )
        else:
            pixels = self._image(self.images[item - len(self.slides)])
            h, w = pixels.shape[:2]
            side = min(h, w, self.source_px)
            y = int(torch.randint(0, h - side + 1, (), generator=g))
            x = int(torch.randint(0, w - side + 1, (), generator=g))
            rgb = np.ascontiguousarray(pixels[y : y + side, x : x + side])
        rgb = resize_tile(rgb, self.source_px)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


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
