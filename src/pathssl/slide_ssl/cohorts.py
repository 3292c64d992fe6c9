"""Synthetic cohorts for slide-level SSL, built from real tissue tiles, whose labels depend on
the layout of tiles (which a mean cannot see) or on their composition (which it can).

Two tile types come from real slides through the pipeline's tissue detection and tiling
(by default the CMU H&E slide at 0.5 and at 2 um/px, so no shared data is needed; with
../shared, CMU against the TCGA slide). Each type's pool is embedded once with the tile
encoder, plus K augmented copies (one shared augmentation per batch, as `embed
--augmentations` does). A synthetic slide is a blob of tiles on a grid; each tile takes the
embedding of a random pool member of its type. Tasks (balanced binary labels):

  segregated   the two types on either side of a line (1) or the same tiles shuffled (0)
  clustered    20 % type B in one compact patch (1) or scattered at random (0)
  composition  10 % (0) or 30 % (1) type B, scattered: a mean pooling can see this one
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from pathssl.encoder.bundle import EncoderBundle, normalise
from pathssl.encoder.inference import batch_augmentation
from pathssl.outputs.features_h5 import create_features_file

TASKS = ("segregated", "clustered", "composition")
STRIDE_L0 = 224


@torch.inference_mode()
def embed_pool(bundle: EncoderBundle, tiles: list[np.ndarray], copies: int) -> np.ndarray:
    """(1 + copies, P, C): plain features, then augmented copies."""
    from pathssl.tiles.loading import resize_tile

    size = bundle.config.input_size_px
    batch = torch.from_numpy(np.stack([resize_tile(t, size).transpose(2, 0, 1) for t in tiles]))
    module = bundle.module.eval()
    out = []
    for copy in range(-1, copies):
        feats = []
        augment = batch_augmentation(copy, size) if copy >= 0 else None
        for b, start in enumerate(range(0, len(batch), 64)):
            x = batch[start : start + 64]
            x = augment(x, b) if augment else x
            feats.append(module(normalise(x, bundle.config)).float().numpy())
        out.append(np.concatenate(feats))
    return np.stack(out)


def default_pools(shared: Path | None, he_slide: Path) -> tuple[list, list]:
    from pathssl.evaluation.dev_tasks import SLIDES, slide_tiles

    if shared is not None and (shared / SLIDES["he-tcga-jp2k"][0]).exists():
        rel, mpp, _ = SLIDES["he-tcga-jp2k"]
        return slide_tiles(he_slide, None, 200), slide_tiles(shared / rel, mpp, 200)
    from pathssl.slide.opening import open_slide
    from pathssl.slide.resolution import resolve_mpp
    from pathssl.tiles.grid import TilingSpec, plan_tiles
    from pathssl.tissue.detection import detect_tissue, render_thumbnail

    with open_slide(he_slide) as slide:  # the same slide at a 4x wider field of view
        res = resolve_mpp(slide)
        tissue = detect_tissue(render_thumbnail(slide, res.mpp))
        grid = plan_tiles(
            slide.levels, res.mpp, tissue, TilingSpec(2.0, 224, min_tissue_fraction=0.5)
        )
        from pathssl.tiles.loading import resize_tile

        wide = [
            resize_tile(
                slide.read_region(int(x), int(y), 0, grid.read_size_px, grid.read_size_px), 224
            )
            for x, y in grid.coords_l0
        ]
    return slide_tiles(he_slide, None, 200), wide


def blob(rng: np.random.Generator, side: int = 22) -> np.ndarray:
    """Grid (row, col) of a random elliptical tissue blob."""
    rr, cc = np.mgrid[0:side, 0:side]
    a, b = rng.uniform(0.3, 0.5, 2) * side
    t = rng.uniform(0, np.pi)
    dr, dc = rr - side / 2, cc - side / 2
    u, v = dr * np.cos(t) + dc * np.sin(t), -dr * np.sin(t) + dc * np.cos(t)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1
    return np.stack([rr[inside], cc[inside]], axis=1)


def assign_types(task: str, label: int, rc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(rc)
    if task == "segregated":
        angle = rng.uniform(0, 2 * np.pi)
        centred = rc - rc.mean(axis=0)
        types = (centred @ np.array([np.cos(angle), np.sin(angle)]) > 0).astype(int)
        return types if label else rng.permutation(types)
    if task == "clustered":
        k = round(0.2 * n)
        types = np.zeros(n, int)
        if label:
            seed = rc[rng.integers(n)]
            types[np.argsort(((rc - seed) ** 2).sum(axis=1), kind="stable")[:k]] = 1
        else:
            types[rng.choice(n, k, replace=False)] = 1
        return types
    if task == "composition":
        types = np.zeros(n, int)
        types[rng.choice(n, round((0.3 if label else 0.1) * n), replace=False)] = 1
        return types
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def build_cohort(
    pools: np.ndarray | list,
    task: str,
    n_slides: int,
    out: Path,
    *,
    seed: int = 0,
    pool_size: int | None = None,
) -> Path:
    """pools: [type A (1+K, P_a, C), type B (1+K, P_b, C)]. Writes out/<slide>/features.h5
    and out/labels.csv; returns the labels file. `pool_size` keeps that many tiles of each
    type: with small pools every slide draws the same tiles, so what tells slides apart is
    where the tiles lie and how many there are, not which tiles were drawn."""
    rng = np.random.default_rng(seed)
    if pool_size is not None:
        pools = [p[:, rng.permutation(p.shape[1])[:pool_size]] for p in pools]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_slides):
        label = i % 2
        rc = blob(rng)
        types = assign_types(task, label, rc, rng)
        picks = [rng.integers(pools[t].shape[1]) for t in types]
        feats = np.stack([pools[t][:, p] for t, p in zip(types, picks, strict=True)], axis=1)
        name = f"{task}-{i:04d}"
        coords = rc[:, ::-1].astype(np.int64) * STRIDE_L0
        attrs = {"patch_size_level0": STRIDE_L0, "synthetic": f"{task} label {label}"}
        (out / name).mkdir(exist_ok=True)
        with create_features_file(out / name / "features.h5", coords, feats.shape[2], attrs) as h5:
            h5["features"][:] = feats[0]
            if feats.shape[0] > 1:
                h5.create_dataset("augmented_features", data=feats[1:])
        rows.append({"slide": name, "label": label})
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["slide", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return labels
