"""Embed one slide, stage by stage: plan (resolution, tissue, grid) -> tiles read ->
encoder -> features -> slide embedding -> outputs, all written at once or none."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pathssl
from pathssl.embed.aggregation import SlideAggregator, default_aggregator
from pathssl.embed.options import EmbedOptions
from pathssl.embed.plan import plan_slide
from pathssl.embed.records import drop_flagged, h5_attrs, judges_ink, tiling_record, tissue_record
from pathssl.encoder.bundle import EncoderBundle
from pathssl.encoder.inference import (
    DeviceSettings,
    batch_augmentation,
    embed_batches,
    engine_description,
    prepare_module,
)
from pathssl.encoder.openvino_engine import resolve_engine
from pathssl.errors import PathsslError
from pathssl.outputs.atomic import Stage, staged_outputs
from pathssl.outputs.disk import (
    check_free_space,
    estimate_output_bytes,
)
from pathssl.outputs.feature_store import FeatureStore
from pathssl.outputs.provenance import code_sha256
from pathssl.outputs.slide_outputs import (
    SlideOutputs,
    write_run_record,
    write_slide_outputs,
)
from pathssl.slide.jpeg_tiles import jpeg_tile_levels
from pathssl.tiles.compressed import CompressedTileReader, checked_reader
from pathssl.tiles.grid import TileGrid
from pathssl.tiles.loading import TileBlockDataset, make_loader, plan_blocks
from pathssl.tissue.tile_qc import TileQC

log = logging.getLogger("pathssl")


def embed_slide(
    slide_path: str | Path,
    output_dir: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions | None = None,
    aggregator: SlideAggregator | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Embed one slide; write its outputs under output_dir all at once (or none on error).
    Returns the run record."""
    slide_path, output_dir = Path(slide_path), Path(output_dir)
    options = options or EmbedOptions()
    title = title or slide_path.name
    aggregator = aggregator or default_aggregator(bundle.path)
    settings = DeviceSettings.auto(options.device)
    layout = options.layout
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    plan = plan_slide(slide_path, bundle, options)
    resolution, tissue, spec, grid = plan.resolution, plan.tissue, plan.spec, plan.grid
    slide_info, cfg = plan.slide_info, bundle.config
    timings["tissue_and_tiling_s"] = time.perf_counter() - t0
    log.info(
        "%s: %d tiles of %d px at %.3f um/px (level %d, read %d px), tissue %s",
        title,
        len(grid),
        grid.tile_size_px,
        grid.patch_mpp,
        grid.level,
        grid.read_size_px,
        tissue.source,
    )

    provenance = {
        "pathssl_version": pathssl.__version__,
        "code_sha256": code_sha256(),
        "model": {
            "name": cfg.name,
            "architecture": cfg.architecture,
            "weights_sha256": bundle.weights_sha256,
            "trained": cfg.trained,
        },
        "resolution": {"mpp": resolution.mpp, "source": resolution.source},
    }
    check_free_space(
        output_dir,
        estimate_output_bytes(
            len(grid), cfg.embedding_dim, options.augmentations, int(np.prod(grid.grid_shape))
        ),
        str(slide_path),
    )
    with staged_outputs(output_dir) as stage:
        t1 = time.perf_counter()
        planned = len(grid)
        feats, augmented, qc, engine, loader_used = _embed_tiles(
            stage,
            slide_path,
            grid,
            (plan.downsample, plan.level_sizes),
            bundle,
            options,
            judges_ink(tissue, options),
        )
        timings["embedding_s"] = time.perf_counter() - t1
        qc_summary = qc.summary()
        if options.drop_flagged:
            qc_summary["dropped"] = qc_summary["flagged"]
            grid, feats, augmented, qc = drop_flagged(slide_path, grid, feats, augmented, qc)

        t2 = time.perf_counter()
        embedding = aggregator(feats, grid.grid_rc)
        if not np.isfinite(embedding).all():
            raise PathsslError(f"{slide_path}: slide embedding is not finite")
        write_slide_outputs(
            stage,
            layout,
            SlideOutputs(
                title=title,
                grid=grid,
                features=feats,
                augmented=augmented,
                embedding=embedding,
                qc=qc,
                preview_image=plan.preview_image,
                tissue=tissue,
                level0_mpp=resolution.mpp,
                level0_size_px=tuple(slide_info["dimensions_px"]),
                h5_attrs=h5_attrs(resolution, grid, slide_info, bundle),
                image_metadata={
                    "pathssl_version": pathssl.__version__,
                    "model_sha256": bundle.weights_sha256,
                    "code_sha256": code_sha256(),
                },
                model_label=f"{cfg.name} (sha256 {bundle.weights_sha256[:12]})",
            ),
        )
        timings["outputs_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        record = {
            "status": "complete",
            "title": title,
            "slide": slide_info,
            **provenance,
            "tissue": tissue_record(tissue),
            "tiling": tiling_record(spec, grid, planned, options.augmentations),
            "tile_qc": qc_summary,
            "slide_embedding": {
                "aggregator": aggregator.name,
                "weights_sha256": getattr(aggregator, "sha256", None),
                "dim": int(embedding.shape[0]),
            },
            "device": settings.describe(),
            "engine": engine,
            "tile_loader": loader_used,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "outputs": layout.files(),
        }
        write_run_record(stage, layout, record)
    return record


def _embed_tiles(
    stage: Stage,
    slide_path: Path,
    grid: TileGrid,
    level_info: tuple[float, list[tuple[int, int]]],
    bundle: EncoderBundle,
    options: EmbedOptions,
    judge_ink: bool,
) -> tuple[np.ndarray, list[np.ndarray], TileQC, str, str]:
    """Features of every tile (and of K augmented copies), with tile QC measured on the way;
    the engine that computed them and the tile loader that read them. `level_info`: the grid
    level's downsample and every level's (width, height)."""
    from tqdm import tqdm

    downsample, level_sizes = level_info
    cfg = bundle.config
    settings = DeviceSettings.auto(options.device)
    blocks = plan_blocks(grid, downsample, options.block_tiles)
    engine = options.engine if not (options.compile and options.engine == "auto") else "pytorch"
    module = prepare_module(
        bundle, settings, options.compile, resolve_engine(engine, settings.device)
    )
    device_reader, loader_used = _device_reader(
        slide_path, grid, blocks, downsample, level_sizes, settings, options
    )
    name = slide_path.name

    def run(store: FeatureStore, desc: str, augment=None, inspect=None) -> int:
        dataset = None if device_reader else TileBlockDataset(slide_path, grid, blocks, downsample)
        loader = device_reader or make_loader(
            dataset, options.num_workers, settings.device.type == "cuda", options.read_threads
        )
        with (
            tqdm(total=len(grid), desc=desc, unit="tile", disable=None) as bar,
            contextlib.closing(dataset) if dataset else contextlib.nullcontext(),
        ):
            return embed_batches(
                module,
                bundle,
                settings,
                loader,
                store.write,
                cfg.embedding_dim,
                options.batch_size,
                str(slide_path),
                bar.update,
                augment,
                inspect,
            )

    stores = [FeatureStore(stage.scratch("features"), len(grid), cfg.embedding_dim)]
    try:
        qc = TileQC.empty(len(grid), judge_ink=judge_ink)
        written = run(stores[0], name[:40], inspect=qc.measure)
        if written != len(grid):
            raise PathsslError(f"{slide_path}: embedded {written} of {len(grid)} tiles")
        for k in range(options.augmentations):
            stores.append(
                FeatureStore(stage.scratch(f"augmented-{k}"), len(grid), cfg.embedding_dim)
            )
            desc = f"{name[:30]} aug {k + 1}/{options.augmentations}"
            run(stores[-1], desc, batch_augmentation(k, cfg.input_size_px))
        finished = [s.finish() for s in stores]
    finally:
        for s in stores:
            s.close()
    return finished[0], finished[1:], qc, engine_description(module), loader_used


def _device_reader(
    slide_path: Path,
    grid: TileGrid,
    blocks: list,
    downsample: float,
    level_sizes: list[tuple[int, int]],
    settings: DeviceSettings,
    options: EmbedOptions,
) -> tuple[CompressedTileReader | None, str]:
    """On CUDA, a JPEG-tiled level is decoded on the GPU (tiles/compressed.py), once its
    decoder has matched the CPU's on the first block; everything else is read by OpenSlide."""
    if settings.device.type != "cuda" or not options.gpu_decode:
        return None, "openslide"
    levels = jpeg_tile_levels(slide_path, level_sizes)
    if len(levels) <= grid.level:
        return None, "openslide (the level is not JPEG-tiled)"
    reader, why = checked_reader(levels[grid.level], grid, blocks, downsample, settings.device)
    if reader is None:
        log.warning("%s: tiles read by OpenSlide: %s", slide_path.name, why)
        return None, f"openslide ({why})"
    return reader, f"compressed JPEG tiles decoded on {settings.device}"
