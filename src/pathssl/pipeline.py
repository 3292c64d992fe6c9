"""Embed one slide end to end, and many slides with resume: the single library entry point
that both the `pathssl embed` command and the container's process.py call.

slide -> resolution -> tissue -> tiles -> loader -> encoder -> features -> aggregation -> outputs
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pathssl
from pathssl.aggregation import SlideAggregator, default_aggregator
from pathssl.compressed_tile_loader import CompressedTileReader, checked_reader
from pathssl.embedding import (
    DeviceSettings,
    batch_augmentation,
    embed_batches,
    engine_description,
    prepare_module,
)
from pathssl.encoder.bundle import EncoderBundle
from pathssl.errors import PathsslError
from pathssl.loading import TileBlockDataset, make_loader, plan_blocks
from pathssl.openvino_engine import resolve_engine
from pathssl.outputs.atomic import Stage, staged_outputs
from pathssl.outputs.disk import (
    check_free_space,
    check_writable,
    estimate_output_bytes,
    is_output_error,
    output_error,
)
from pathssl.outputs.feature_store import FeatureStore
from pathssl.outputs.lock import remove_stale_temporaries, slide_lock
from pathssl.outputs.preview import preview_mpp
from pathssl.outputs.run_index import write_run_index
from pathssl.outputs.slide_outputs import (
    OutputLayout,
    SlideOutputs,
    write_run_record,
    write_slide_outputs,
)
from pathssl.provenance import code_sha256
from pathssl.slide.jpeg_tiles import jpeg_tile_levels
from pathssl.slide.opening import find_slides, open_slide, slide_name
from pathssl.slide.resolution import Resolution, resolve_mpp
from pathssl.tile_qc import TileQC
from pathssl.tiling import TileGrid, TilingSpec, plan_tiles
from pathssl.tissue import (
    Thumbnail,
    TissueMask,
    detect_tissue,
    load_tissue_mask,
    render_thumbnail,
)

log = logging.getLogger("pathssl")


@dataclass(frozen=True)
class EmbedOptions:
    mpp: float | None = None  # level-0 microns per pixel override
    tissue_mask: Path | None = None
    min_tissue_fraction: float = 0.25
    exclude_ink: bool = True  # marker ink is not tissue (see ink.py)
    drop_flagged: bool = False  # leave tiles flagged by tile QC (ink, blur) out of the outputs
    mpp_tolerance: float = 0.05
    max_tiles: int | None = None
    batch_size: int = 64
    num_workers: int | None = None  # reading processes; None: cores - 1 with a GPU, else 0
    read_threads: int | None = None  # reading threads without processes; None: cores, <= 4
    block_tiles: int = 8  # tiles per side of one region read
    device: str | None = None
    compile: bool = False  # torch.compile the encoder (worth it on GPU for large slides)
    engine: str = "auto"  # "auto": OpenVINO on a CPU where installed, else PyTorch
    gpu_decode: bool = True  # on CUDA, decode JPEG-tiled slides' tiles on the GPU
    augmentations: int = 0  # K augmented copies of every tile's features (slide-level SSL)
    layout: OutputLayout = field(default_factory=OutputLayout)


@dataclass
class SlideReport:
    slide: str
    status: str  # "complete", "skipped" or "failed"
    output_dir: str
    tiles: int = 0
    seconds: float = 0.0
    error: str | None = None
    qc_flagged: int = 0  # tiles flagged by tile QC (ink, blur); see run.json
    qc_dropped: int = 0


@dataclass(frozen=True)
class SlidePlan:
    """What embedding a slide needs from the slide file before reading any tile."""

    resolution: Resolution
    tissue: TissueMask
    spec: TilingSpec
    grid: TileGrid
    level_sizes: list[tuple[int, int]]
    downsample: float  # of the level the tiles are read from
    preview_image: Thumbnail
    slide_info: dict[str, Any]  # for the run record: a file name, never a host path


def plan_slide(slide_path: Path, bundle: EncoderBundle, options: EmbedOptions) -> SlidePlan:
    """Resolution, tissue, tile grid and preview picture of one slide (opened once)."""
    with open_slide(slide_path) as slide:
        resolution = resolve_mpp(slide, options.mpp)
        thumb = render_thumbnail(slide, resolution.mpp)
        if options.tissue_mask is not None:
            tissue = load_tissue_mask(Path(options.tissue_mask), slide, resolution.mpp)
        else:
            tissue = detect_tissue(thumb, exclude_ink=options.exclude_ink)
        cfg = bundle.config
        spec = TilingSpec(
            target_mpp=cfg.target_mpp,
            tile_size_px=cfg.input_size_px,
            mpp_tolerance=options.mpp_tolerance,
            min_tissue_fraction=options.min_tissue_fraction,
            max_tiles=options.max_tiles,
        )
        grid = plan_tiles(slide.levels, resolution.mpp, tissue, spec, str(slide_path))
        preview_image = thumb
        wanted_mpp = preview_mpp(resolution.mpp, slide.dimensions)
        if options.layout.preview and wanted_mpp < thumb.mpp:  # small slides: a finer picture
            preview_image = render_thumbnail(
                slide, resolution.mpp, target_mpp=wanted_mpp, source_mpp=None
            )
        return SlidePlan(
            resolution=resolution,
            tissue=tissue,
            spec=spec,
            grid=grid,
            level_sizes=[(lv.width, lv.height) for lv in slide.levels],
            downsample=slide.levels[grid.level].downsample,
            preview_image=preview_image,
            slide_info={
                "file": slide_path.name,
                "backend": slide.backend,
                "vendor": getattr(slide, "vendor", slide.backend),
                "dimensions_px": list(slide.dimensions),
                "levels": len(slide.levels),
            },
        )


def embed_slide(
    slide_path: str | Path,
    output_dir: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions = EmbedOptions(),
    aggregator: SlideAggregator | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Embed one slide; write its outputs under output_dir all at once (or none on error).
    Returns the run record."""
    slide_path, output_dir = Path(slide_path), Path(output_dir)
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
            _judges_ink(tissue, options),
        )
        timings["embedding_s"] = time.perf_counter() - t1
        qc_summary = qc.summary()
        if options.drop_flagged:
            qc_summary["dropped"] = qc_summary["flagged"]
            grid, feats, augmented, qc = _drop_flagged(slide_path, grid, feats, augmented, qc)

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
                h5_attrs=_h5_attrs(resolution, grid, slide_info, bundle),
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
            "tissue": _tissue_record(tissue),
            "tiling": _tiling_record(spec, grid, planned, options.augmentations),
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
    """On CUDA, a JPEG-tiled level is decoded on the GPU (compressed_tile_loader.py), once its
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


def _h5_attrs(
    resolution: Resolution, grid: TileGrid, slide_info: dict[str, Any], bundle: EncoderBundle
) -> dict[str, Any]:
    """features.h5 attributes, named as in CLAM/TRIDENT feature files."""
    return {
        "mpp": resolution.mpp,
        "mpp_source": resolution.source,
        "patch_mpp": grid.patch_mpp,
        "patch_size": grid.tile_size_px,
        "patch_size_level0": grid.stride_l0_px,
        "patch_level": grid.level,
        "level_dim": list(slide_info["dimensions_px"]),
        "model_name": bundle.config.name,
        "model_sha256": bundle.weights_sha256,
        "model_trained": bundle.config.trained,
        "pathssl_version": pathssl.__version__,
        "code_sha256": code_sha256(),
    }


def _tissue_record(tissue: TissueMask) -> dict[str, Any]:
    return {
        "source": tissue.source,
        "mask_mpp": tissue.mpp,
        "fraction_of_slide": float(tissue.mask.mean()),
        "ink_fraction_excluded": tissue.ink_fraction,
    }


def _tiling_record(
    spec: TilingSpec, grid: TileGrid, planned: int, augmentations: int
) -> dict[str, Any]:
    """How the slide was tiled; `planned`: tiles before --drop-flagged left any out."""
    return {
        "target_mpp": spec.target_mpp,
        "tile_size_px": grid.tile_size_px,
        "patch_mpp": grid.patch_mpp,
        "level": grid.level,
        "level_mpp": grid.level_mpp,
        "read_size_px": grid.read_size_px,
        "stride_level0_px": grid.stride_l0_px,
        "grid_shape": list(grid.grid_shape),
        "tiles": len(grid),
        "tiles_planned": planned,
        "tiles_in_tissue": grid.tissue_tiles,
        "min_tissue_fraction": spec.min_tissue_fraction,
        "max_tiles": spec.max_tiles,
        "capped": grid.tissue_tiles > planned,
        "augmented_copies": augmentations,
    }


def _judges_ink(tissue: TissueMask, options: EmbedOptions) -> bool:
    """Ink is judged on brightfield slides unless the user keeps ink (--keep-ink)."""
    return options.exclude_ink and tissue.source != "detected-fluorescence"


def _drop_flagged(
    slide_path: Path,
    grid: TileGrid,
    feats: np.ndarray,
    augmented: list[np.ndarray],
    qc: TileQC,
) -> tuple[TileGrid, np.ndarray, list[np.ndarray], TileQC]:
    """The grid, features and QC without the flagged tiles."""
    keep = ~qc.flagged
    if not keep.any():
        raise PathsslError(
            f"{slide_path}: tile QC flags all {len(keep)} tiles (ink {int(qc.ink.sum())}, "
            f"blur {int(qc.blurred.sum())}); run without --drop-flagged to keep them"
        )
    kept = replace(grid, grid_rc=grid.grid_rc[keep], tissue_fraction=grid.tissue_fraction[keep])
    kept_qc = replace(qc, ink_fraction=qc.ink_fraction[keep], focus=qc.focus[keep])
    feats, augmented = np.asarray(feats[keep]), [np.asarray(a[keep]) for a in augmented]
    return kept, feats, augmented, kept_qc


def is_complete(output_dir: Path, bundle: EncoderBundle, layout: OutputLayout) -> bool:
    """A slide is done when its run record exists, names the same model and all its outputs
    are present."""
    record_path = output_dir / layout.run_record
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("status") != "complete":
        return False
    if record.get("model", {}).get("weights_sha256") != bundle.weights_sha256:
        return False
    return all((output_dir / rel).exists() for rel in record.get("outputs", {}).values())


def embed_slides(
    inputs: list[str | Path],
    output_root: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions = EmbedOptions(),
    resume: bool = True,
    aggregator: SlideAggregator | None = None,
) -> list[SlideReport]:
    """Embed every slide under `inputs`, one folder each under output_root; a failing slide
    is recorded and the run goes on. Writes output_root/summary.json."""
    output_root = Path(output_root)
    slides = find_slides(inputs)
    aggregator = aggregator or default_aggregator(bundle.path)  # load a slide encoder once
    names: list[str] = []
    for path in slides:  # over the whole list, so names do not depend on the sharding
        names.append(slide_name(path, names))
    shard = Shard.from_env()
    if shard.world > 1:
        if options.device is None and torch.cuda.is_available():
            options = replace(options, device=f"cuda:{shard.local_rank}")
        log.info(
            "shard %d of %d: %d of %d slides",
            shard.rank,
            shard.world,
            len(slides[shard.rank :: shard.world]),
            len(slides),
        )
    check_writable(output_root)  # one line before any work if the folder cannot be written
    reports: list[SlideReport] = []
    for path, name in list(zip(slides, names, strict=True))[shard.rank :: shard.world]:
        try:
            reports.append(
                _embed_locked(path, output_root / name, bundle, options, resume, aggregator)
            )
        except OSError as exc:
            if not is_output_error(exc, output_root):
                raise
            raise output_error(exc, output_root / name) from exc  # the run cannot go on
    try:
        with staged_outputs(output_root) as stage:
            summary = {
                "model": {"name": bundle.config.name, "weights_sha256": bundle.weights_sha256},
                "slides": [asdict(r) for r in reports],
            }
            stage.path(shard.summary_name).write_text(json.dumps(summary, indent=2) + "\n")
            if options.layout.preview:
                write_run_index(
                    stage.path(
                        shard.summary_name.replace("summary", "index").replace(".json", ".html")
                    ),
                    reports,
                    bundle.config.name,
                    bundle.weights_sha256,
                    options.layout.preview,
                )
    except OSError as exc:
        raise output_error(exc, output_root) from exc
    return reports


def _embed_locked(
    path: Path,
    out_dir: Path,
    bundle: EncoderBundle,
    options: EmbedOptions,
    resume: bool,
    aggregator: SlideAggregator,
) -> SlideReport:
    """One slide under its lock: skipped if another process holds it or it is complete;
    a failure is recorded as one line. Output-side OSErrors (disk full, read-only) propagate."""
    with slide_lock(out_dir) as held:
        if not held:
            log.warning(
                "%s: another process is embedding it (lock beside %s), skipped", path.name, out_dir
            )
            return SlideReport(
                str(path), "skipped", str(out_dir), error="locked by another process"
            )
        stale = remove_stale_temporaries(out_dir)
        if stale:
            log.info("%s: removed %d temporary files of an interrupted run", path.name, len(stale))
        if resume and is_complete(out_dir, bundle, options.layout):
            log.info("%s: outputs complete, skipped", path.name)
            return SlideReport(str(path), "skipped", str(out_dir))
        t0 = time.perf_counter()
        try:
            record = embed_slide(path, out_dir, bundle, options, aggregator)
        except PathsslError as exc:
            log.error("%s: failed: %s", path.name, exc)
            return SlideReport(str(path), "failed", str(out_dir), error=str(exc))
        except Exception as exc:  # an unexpected bug on one slide must not stop the archive
            if is_output_error(exc, out_dir.parent):
                raise
            log.exception("%s: failed unexpectedly", path.name)
            msg = f"{path}: unexpected {type(exc).__name__}: {exc}"
            return SlideReport(str(path), "failed", str(out_dir), error=msg)
        return SlideReport(
            str(path),
            "complete",
            str(out_dir),
            record["tiling"]["tiles"],
            time.perf_counter() - t0,
            qc_flagged=record["tile_qc"]["flagged"],
            qc_dropped=record["tile_qc"]["dropped"],
        )


@dataclass(frozen=True)
class Shard:
    """This process's share of a slide list under torchrun or Slurm: slides rank, rank+world,
    ... (disjoint and deterministic); one GPU per process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        import os

        env = os.environ
        world = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", "1")))
        rank = int(env.get("RANK", env.get("SLURM_PROCID", "0")))
        local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
        if not 0 <= rank < world:
            raise PathsslError(f"RANK {rank} is outside WORLD_SIZE {world}")
        return cls(rank, world, local)

    @property
    def summary_name(self) -> str:
        return "summary.json" if self.world == 1 else f"summary-rank{self.rank}.json"
