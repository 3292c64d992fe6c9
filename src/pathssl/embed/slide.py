"""Embed one slide, stage by stage: plan (resolution, tissue, grid) -> tiles read ->
encoder -> features -> slide embedding -> outputs, all written at once or none."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import pathssl
from pathssl.atomic import Stage, staged_outputs
from pathssl.embed.aggregation import (
    SlideAggregator,
    aggregate,
    choose_aggregator,
    tiles_taken,
)
from pathssl.embed.options import EmbedOptions
from pathssl.embed.plan import SlidePlan, plan_slide
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


@dataclass(frozen=True)
class EmbeddedTiles:
    """What the encoder stage gives: features of every tile (and of K augmented copies), the
    tile QC measured on the way, and what computed and read them."""

    features: np.ndarray
    augmented: list[np.ndarray]
    qc: TileQC
    engine: str
    loader: str


def embed_slide(
    slide_path: str | Path,
    output_dir: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions | None = None,
    *,
    aggregator: SlideAggregator | None = None,
    title: str | None = None,
    identity: dict[str, Any] | None = None,
    plan: SlidePlan | None = None,
) -> dict[str, Any]:
    """Embed one slide; write its outputs under output_dir all at once (or none on error).
    `identity` (embed.identity.run_identity) is stored in run.json for resume; `plan`, the
    slide's plan when it was made ahead (embed.plan_ahead). Returns the run record."""
    slide_path, output_dir = Path(slide_path), Path(output_dir)
    options = options or EmbedOptions()
    title = title or slide_path.name
    aggregator = aggregator or choose_aggregator(bundle, options)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    plan, module = _plan_and_prepare(slide_path, bundle, options, plan)
    timings["tissue_and_tiling_s"] = time.perf_counter() - t0
    _log_plan(title, plan)
    check_free_space(output_dir, _estimated_bytes(plan, bundle, options), str(slide_path))
    with staged_outputs(output_dir) as stage:
        t1 = time.perf_counter()
        tiles = embed_tiles(stage, slide_path, plan, bundle, options, module=module)
        timings["embedding_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        grid, tiles, qc_summary = _apply_tile_qc(slide_path, plan.grid, tiles, options)
        embedding = aggregate(aggregator, tiles.features, grid)
        if not np.isfinite(embedding).all():
            raise PathsslError(f"{slide_path}: slide embedding is not finite")
        outputs = _slide_outputs(title, plan, grid, tiles, embedding=embedding, bundle=bundle)
        write_slide_outputs(stage, options.layout, outputs)
        timings["outputs_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        record = {
            "status": "complete",
            "title": title,
            "slide": plan.slide_info,
            **_provenance(plan, bundle),
            "tissue": tissue_record(plan.tissue),
            "tiling": tiling_record(plan.spec, grid, len(plan.grid), options.augmentations),
            "tile_qc": qc_summary,
            "slide_embedding": _embedding_record(aggregator, embedding, len(grid)),
            **_how_it_ran(options, tiles),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "outputs": options.layout.files(),
        }
        if identity is not None:
            record["run_identity"] = identity
        write_run_record(stage, options.layout, record)
    return record


def _embedding_record(
    aggregator: SlideAggregator, embedding: np.ndarray, tiles: int
) -> dict[str, Any]:
    return {
        "aggregator": aggregator.name,
        "weights_sha256": getattr(aggregator, "sha256", None),
        "dim": int(embedding.shape[0]),
        "tiles": tiles_taken(aggregator, tiles),  # fewer than the slide's: an even subsample
    }


def _plan_and_prepare(
    slide_path: Path, bundle: EncoderBundle, options: EmbedOptions, plan: SlidePlan | None
) -> tuple[SlidePlan, torch.nn.Module]:
    """The slide's plan and the engine, prepared side by side: OpenVINO's conversion (~1.8 s
    on 2 cores for the bundled ResNet-18) then costs no time on the first slide of a run."""
    if plan is not None:  # planned ahead; the engine is prepared once a run
        return plan, prepare_engine(bundle, options)
    with ThreadPoolExecutor(1, thread_name_prefix="pathssl-engine") as pool:
        engine = pool.submit(prepare_engine, bundle, options)
        plan = plan_slide(slide_path, bundle, options)
        return plan, engine.result()


def _log_plan(title: str, plan: SlidePlan) -> None:
    grid = plan.grid
    log.info(
        "%s: %d tiles of %d px at %.3f um/px (level %d, read %d px), tissue %s",
        title,
        len(grid),
        grid.tile_size_px,
        grid.patch_mpp,
        grid.level,
        grid.read_size_px,
        plan.tissue.source,
    )


def _estimated_bytes(plan: SlidePlan, bundle: EncoderBundle, options: EmbedOptions) -> int:
    cells = int(np.prod(plan.grid.grid_shape))
    dim = bundle.config.embedding_dim
    return estimate_output_bytes(len(plan.grid), dim, options.augmentations, cells)


def _provenance(plan: SlidePlan, bundle: EncoderBundle) -> dict[str, Any]:
    cfg = bundle.config
    return {
        "pathssl_version": pathssl.__version__,
        "code_sha256": code_sha256(),
        "model": {
            "name": cfg.name,
            "architecture": cfg.architecture,
            "weights_sha256": bundle.weights_sha256,
            "trained": cfg.trained,
        },
        "resolution": {"mpp": plan.resolution.mpp, "source": plan.resolution.source},
    }


def _how_it_ran(options: EmbedOptions, tiles: EmbeddedTiles) -> dict[str, Any]:
    return {
        "device": DeviceSettings.auto(options.device).describe(),
        "engine": tiles.engine,
        "tile_loader": tiles.loader,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _apply_tile_qc(
    slide_path: Path, grid: TileGrid, tiles: EmbeddedTiles, options: EmbedOptions
) -> tuple[TileGrid, EmbeddedTiles, dict[str, Any]]:
    """The QC summary; with --drop-flagged, the grid and features without flagged tiles."""
    summary = tiles.qc.summary()
    if not options.drop_flagged:
        return grid, tiles, summary
    summary["dropped"] = summary["flagged"]
    grid, feats, augmented, qc = drop_flagged(
        slide_path, grid, tiles.features, tiles.augmented, tiles.qc
    )
    return grid, replace(tiles, features=feats, augmented=augmented, qc=qc), summary


def _slide_outputs(
    title: str,
    plan: SlidePlan,
    grid: TileGrid,
    tiles: EmbeddedTiles,
    *,
    embedding: np.ndarray,
    bundle: EncoderBundle,
) -> SlideOutputs:
    cfg = bundle.config
    return SlideOutputs(
        title=title,
        grid=grid,
        features=tiles.features,
        augmented=tiles.augmented,
        embedding=embedding,
        qc=tiles.qc,
        preview_image=plan.preview_image,
        tissue=plan.tissue,
        level0_mpp=plan.resolution.mpp,
        level0_size_px=tuple(plan.slide_info["dimensions_px"]),
        h5_attrs=h5_attrs(plan.resolution, grid, plan.slide_info, bundle),
        image_metadata={
            "pathssl_version": pathssl.__version__,
            "model_sha256": bundle.weights_sha256,
            "code_sha256": code_sha256(),
        },
        model_label=f"{cfg.name} (sha256 {bundle.weights_sha256[:12]})",
    )


def prepare_engine(bundle: EncoderBundle, options: EmbedOptions) -> torch.nn.Module:
    """The encoder on the engine and device the options ask for (prepared once a bundle)."""
    settings = DeviceSettings.auto(options.device)
    engine = options.engine if not (options.compile and options.engine == "auto") else "pytorch"
    return prepare_module(
        bundle, settings, options.compile, resolve_engine(engine, settings.device)
    )


def embed_tiles(
    stage: Stage,
    slide_path: Path,
    plan: SlidePlan,
    bundle: EncoderBundle,
    options: EmbedOptions,
    *,
    module: torch.nn.Module | None = None,
) -> EmbeddedTiles:
    """Features of every tile of the plan (and of K augmented copies), staged in scratch
    files of `stage`, with tile QC measured on the way."""
    grid, dim = plan.grid, bundle.config.embedding_dim
    settings = DeviceSettings.auto(options.device)
    blocks = plan_blocks(grid, plan.downsample, options.block_tiles)
    module = module if module is not None else prepare_engine(bundle, options)
    device_reader, loader_used = _device_reader(slide_path, plan, blocks, settings, options)
    name = slide_path.name

    def run(store: FeatureStore, desc: str, augment=None, inspect=None) -> int:
        dataset = (
            None if device_reader else TileBlockDataset(slide_path, grid, blocks, plan.downsample)
        )
        loader = device_reader or make_loader(
            dataset, options.num_workers, settings.device.type == "cuda", options.read_threads,
            inspect=inspect,
        )  # fmt: skip
        phased = getattr(loader, "phased", False)
        inspected_by_reader = getattr(loader, "inspect", None) is not None
        with (
            tqdm(total=len(grid), desc=desc, unit="tile", disable=None) as bar,
            contextlib.closing(dataset) if dataset else contextlib.nullcontext(),
        ):
            return embed_batches(
                module, bundle, settings, loader, store.write,
                batch_size=options.batch_size, label=str(slide_path),
                on_batch=bar.update, augment=augment,
                inspect=None if inspected_by_reader else inspect, overlap=not phased,
            )  # fmt: skip

    stores = [FeatureStore(stage.scratch("features"), len(grid), dim)]
    try:
        qc = TileQC.empty(len(grid), judge_ink=judges_ink(plan.tissue, options))
        written = run(stores[0], name[:40], inspect=qc.measure)
        if written != len(grid):
            raise PathsslError(f"{slide_path}: embedded {written} of {len(grid)} tiles")
        for k in range(options.augmentations):
            stores.append(FeatureStore(stage.scratch(f"augmented-{k}"), len(grid), dim))
            desc = f"{name[:30]} aug {k + 1}/{options.augmentations}"
            run(stores[-1], desc, batch_augmentation(k, bundle.config.input_size_px))
        finished = [s.finish() for s in stores]
    finally:
        for s in stores:
            s.close()
    return EmbeddedTiles(finished[0], finished[1:], qc, engine_description(module), loader_used)


def _device_reader(
    slide_path: Path,
    plan: SlidePlan,
    blocks: list,
    settings: DeviceSettings,
    options: EmbedOptions,
) -> tuple[CompressedTileReader | None, str]:
    """On CUDA, a JPEG-tiled level is decoded on the GPU (tiles/compressed.py), once its
    decoder has matched the CPU's on the first block; everything else is read by OpenSlide."""
    grid, downsample = plan.grid, plan.downsample
    if settings.device.type != "cuda" or not options.gpu_decode:
        return None, plan.region_decoder
    levels = jpeg_tile_levels(slide_path, plan.level_sizes)
    if len(levels) <= grid.level:
        return None, f"{plan.region_decoder} (the level is not JPEG-tiled)"
    reader, why = checked_reader(levels[grid.level], grid, blocks, downsample, settings.device)
    if reader is None:
        log.warning("%s: tiles read by OpenSlide: %s", slide_path.name, why)
        return None, f"{plan.region_decoder} ({why})"
    return reader, f"compressed JPEG tiles decoded on {settings.device}"
