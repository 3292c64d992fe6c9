"""Write one slide's outputs into a stage (see atomic.py), each only if the layout names it.

embed_slide computes; this module only writes, so that the output plan (which files, under
which names, with which metadata) reads in one place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pathssl.atomic import Stage
from pathssl.outputs.features_h5 import write_features_file
from pathssl.outputs.images import write_feature_map, write_mask
from pathssl.outputs.preview import PreviewCaption, write_preview
from pathssl.outputs.unicorn import (
    patch_meta,
    write_patch_representation,
    write_slide_representation,
)

if TYPE_CHECKING:
    from pathssl.tiles.grid import TileGrid
    from pathssl.tissue.detection import Thumbnail, TissueMask
    from pathssl.tissue.tile_qc import TileQC


@dataclass(frozen=True)
class OutputLayout:
    """Relative output paths; Grand-Challenge socket slugs decide them on the platform.
    None leaves an output out."""

    slide_embedding: str = "image-neural-representation.json"
    patch_embeddings: str | None = "patch-neural-representation.json"
    feature_map: str | None = "images/feature-map/feature-map.mha"
    tissue_mask: str | None = "images/tissue-mask/tissue-mask.mha"
    features_h5: str | None = "features.h5"
    preview: str | None = "preview.png"
    run_record: str = "run.json"  # written last: its presence marks a complete slide

    def files(self) -> dict[str, str]:
        """Every output this layout writes, run record excluded."""
        return {k: v for k, v in asdict(self).items() if v and k != "run_record"}


@dataclass(frozen=True)
class SlideOutputs:
    """What one embedded slide leaves behind, ready to write."""

    title: str
    grid: TileGrid
    features: np.ndarray  # (N, D), one row per tile of `grid`
    augmented: list[np.ndarray]  # K arrays like `features` (slide-level SSL views)
    embedding: np.ndarray  # (E,) slide embedding
    qc: TileQC
    preview_image: Thumbnail  # the slide at preview resolution (preview.preview_mpp)
    tissue: TissueMask
    level0_mpp: float
    level0_size_px: tuple[int, int]  # (width, height)
    h5_attrs: dict[str, Any]
    image_metadata: dict[str, str]  # provenance written into each .mha header
    model_label: str  # e.g. "resnet18-barlow-200steps (sha256 d1944fffdb04)"

    def caption(self) -> PreviewCaption:
        grid, qc = self.grid, self.qc
        return PreviewCaption(
            self.title,
            [
                f"model {self.model_label}",
                f"{len(grid)} tiles of {grid.tile_size_px} px at {grid.patch_mpp:.3f} um/px "
                f"(slide {self.level0_size_px[0]} x {self.level0_size_px[1]} px at "
                f"{self.level0_mpp:.3f} um/px); tissue: {self.tissue.source}",
                f"tile QC: {int(qc.flagged.sum())} flagged ({int(qc.ink.sum())} ink, "
                f"{int(qc.blurred.sum())} blurred)",
            ],
        )


def write_slide_outputs(stage: Stage, layout: OutputLayout, out: SlideOutputs) -> None:
    """Every output but the run record, into the stage. The files are written side by side
    on every core (zlib, PNG and HDF5 release the GIL): after the encoder they would
    otherwise run on one core while the others wait."""
    jobs = _picture_writers(stage, layout, out) + _feature_writers(stage, layout, out)
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(job) for job in jobs]
        for future in futures:  # every writer finishes; the first failure is raised
            future.result()


Writer = Callable[[], None]  # stage paths are taken before the writers run, in one thread


def _picture_writers(stage: Stage, layout: OutputLayout, out: SlideOutputs) -> list[Writer]:
    jobs: list[Writer] = []
    if layout.preview:  # the slowest: first
        jobs.append(
            partial(
                write_preview,
                stage.path(layout.preview),
                out.preview_image,
                out.tissue,
                out.grid,
                out.features,
                flagged=out.qc.flagged,
                caption=out.caption(),
                fluorescence=out.tissue.source == "detected-fluorescence",
            )
        )
    if layout.feature_map:
        path = stage.path(layout.feature_map)
        meta = out.image_metadata
        jobs.append(partial(write_feature_map, path, out.grid, out.features, out.level0_mpp, meta))
    if layout.tissue_mask:
        path = stage.path(layout.tissue_mask)
        jobs.append(partial(write_mask, path, out.tissue.mask, out.tissue.mpp, out.image_metadata))
    return jobs


def _feature_writers(stage: Stage, layout: OutputLayout, out: SlideOutputs) -> list[Writer]:
    coords = out.grid.coords_l0
    jobs: list[Writer] = []
    if layout.patch_embeddings:
        meta = patch_meta(out.grid.stride_l0_px, out.level0_mpp, out.level0_size_px)
        path = stage.path(layout.patch_embeddings)
        jobs.append(
            partial(write_patch_representation, path, out.title, meta, coords, out.features)
        )
    if layout.features_h5:
        jobs.append(
            partial(
                write_features_file,
                stage.path(layout.features_h5),
                coords,
                out.features,
                out.h5_attrs,
                augmented=out.augmented,
                per_tile={"qc_ink_fraction": out.qc.ink_fraction, "qc_focus": out.qc.focus},
            )
        )
    path = stage.path(layout.slide_embedding)
    jobs.append(partial(write_slide_representation, path, out.title, out.embedding))
    return jobs


def write_run_record(stage: Stage, layout: OutputLayout, record: dict[str, Any]) -> Path:
    """The run record, last: its presence marks the slide complete."""
    path = stage.path(layout.run_record)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
