"""Embedding throughput and memory on one slide and one model, in one run.

    python bench/embed_throughput.py --slide SLIDE [--model DIR] [--workers N]
    python bench/embed_throughput.py --synthetic 20000x16000 --model model/

Prints, as ratios measured in the same run (this machine is shared and noisy):
  encoder ceiling     tiles/s of the encoder on tiles already in memory, before and after
                      end-to-end (the mean is used)
  reading ceiling     tiles/s read, decoded and resized by the loader, no model
  end-to-end          tiles/s of `embed_slide` (all outputs written), and its ratio to the
                      lower ceiling and to 1 / (1/encoder + 1/reading): on a CPU both
                      ceilings are measured on every core, so that is all they can reach
                      together
  naive baseline      CLAM-style: one read_region per tile, PIL resize, one process, same
                      encoder; and the speed-up of end-to-end over it. Also the naive
                      reading alone, and the speed-up of the reading ceiling over it (what
                      end-to-end gains where the encoder costs nothing, as on a fast GPU)
  peak memory         proportional set size (PSS) of the whole process tree (workers
                      included) during end-to-end, sampled from /proc every 0.5 s; and the
                      main process's exact peak RSS (getrusage)
  tissue and tiling   seconds to render the thumbnail, detect tissue and plan the grid
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pathssl.runtime import configure_openmp

configure_openmp()  # as `pathssl embed` does, before PyTorch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from tree_memory import TreeMemory  # noqa: E402

from pathssl.embed import EmbedOptions, embed_slide  # noqa: E402
from pathssl.encoder.bundle import load_bundle, normalise  # noqa: E402
from pathssl.encoder.inference import DeviceSettings, engine_input, prepare_module  # noqa: E402
from pathssl.encoder.openvino_engine import resolve_engine  # noqa: E402
from pathssl.slide import open_slide, resolve_mpp  # noqa: E402
from pathssl.tiles.grid import TilingSpec, plan_tiles  # noqa: E402
from pathssl.tiles.loading import TileBlockDataset, iter_batches, make_loader, plan_blocks  # noqa: E402
from pathssl.tissue.detection import detect_tissue, render_thumbnail  # noqa: E402


def plan(slide_path: Path, bundle, mpp: float | None):
    t0 = time.perf_counter()
    with open_slide(slide_path) as slide:
        res = resolve_mpp(slide, mpp)
        tissue = detect_tissue(render_thumbnail(slide, res.mpp))
        cfg = bundle.config
        grid = plan_tiles(
            slide.levels, res.mpp, tissue, TilingSpec(cfg.target_mpp, cfg.input_size_px)
        )
        downsample = slide.levels[grid.level].downsample
        tissue_fraction = float(tissue.mask.mean())
    return grid, downsample, time.perf_counter() - t0, tissue_fraction


@torch.inference_mode()
def encoder_ceiling(
    bundle, batch_size: int, engine: str, device: str | None, seconds: float = 10.0
) -> float:
    """Tiles/s of the encoder as the pipeline runs it: same device, engine, memory layout,
    autocast on a GPU; the uint8 batch moved and normalised on the device each time."""
    import contextlib

    settings = DeviceSettings.auto(device)
    size = bundle.config.input_size_px
    batch = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    module = prepare_module(bundle, settings, engine=resolve_engine(engine, settings.device))
    autocast = (
        torch.autocast(settings.device.type, dtype=settings.autocast_dtype)
        if settings.autocast_dtype is not None
        else contextlib.nullcontext()
    )

    def step() -> None:  # as embed_batches: to the device, as the engine takes it, encode
        module(engine_input(module, batch.to(settings.device), bundle.config))

    with torch.inference_mode(), autocast:
        step()  # warm-up
        if settings.device.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            n += batch_size
        if settings.device.type == "cuda":
            torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def reading_ceiling(
    slide_path: Path,
    grid,
    downsample: float,
    workers: int | None,
    threads: int | None,
    batch_size: int,
) -> float:
    dataset = TileBlockDataset(slide_path, grid, plan_blocks(grid, downsample), downsample)
    loader = make_loader(dataset, workers, read_threads=threads)
    n, t0 = 0, time.perf_counter()
    for tiles, _ in iter_batches(loader, batch_size):
        n += len(tiles)
    dataset.close()
    return n / (time.perf_counter() - t0)


def _per_tile_reader(slide_path: Path, level: int, read_px: int):
    """CLAM reads with openslide-python's public API: read_region(...).convert("RGB")."""
    import openslide

    if openslide.OpenSlide.detect_format(str(slide_path)) is not None:
        osr = openslide.OpenSlide(str(slide_path))
        return lambda x, y: osr.read_region((x, y), level, (read_px, read_px)).convert("RGB")
    slide = open_slide(slide_path)
    return lambda x, y: Image.fromarray(slide.read_region(x, y, level, read_px, read_px))


@torch.inference_mode()
def naive_baseline(
    slide_path: Path,
    grid,
    bundle,
    batch_size: int,
    max_tiles: int,
    device: torch.device,
    encode: bool = True,
) -> float:
    """CLAM-style: read_region per tile at the chosen level, PIL resize, batch, encode (or,
    with encode False, only read: the naive reading ceiling)."""
    coords = grid.coords_l0[:max_tiles]
    size = bundle.config.input_size_px
    # as the peers run it: PyTorch eager, NCHW, fp32, a copy untouched by the pipeline's engine
    module = copy.deepcopy(bundle.module).eval().to(device, memory_format=torch.contiguous_format)
    t0 = time.perf_counter()
    read = _per_tile_reader(slide_path, grid.level, grid.read_size_px)
    batch = []
    for x, y in coords:
        img = read(int(x), int(y))
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        batch.append(torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()))
        if len(batch) == batch_size:
            if encode:
                module(normalise(torch.stack(batch).to(device), bundle.config))
            batch = []
    if batch and encode:
        module(normalise(torch.stack(batch).to(device), bundle.config))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(coords) / (time.perf_counter() - t0)


def run_end_to_end(slide_path: Path, tmp: Path, bundle, options, copies: int) -> list[dict]:
    """`embed_slide` on the slide; with copies > 1, `embed_slides` (a run, which plans the
    next slide while one embeds) on that many hard links to it (tmp must be on the slide's
    file system). The run records."""
    if copies == 1:
        return [embed_slide(slide_path, tmp / "out", bundle, options)]
    from pathssl.embed import embed_slides

    folder = tmp / "copies"
    folder.mkdir()
    for i in range(copies):  # hard links: a run embeds each path once, however linked
        os.link(slide_path, folder / f"copy{i}{slide_path.suffix}")
    reports = embed_slides([folder], tmp / "out", bundle, options)
    if [r.status for r in reports] != ["complete"] * copies:
        sys.exit(f"the run did not embed every copy: {[r.status for r in reports]}")
    return [json.loads(p.read_text()) for p in sorted((tmp / "out").glob("*/run.json"))]


def more_rounds(results: dict, args, slide_path, tmp, bundle, options, tiles: int, device) -> None:
    """Rounds 2..N: end to end again, then the encoder alone again; each round's ratio is its
    end to end over the mean of the encoder-alone rates just before and just after it. The
    median over rounds is less at the mercy of a neighbour on a shared machine."""
    ratios = [results["end_to_end_over_encoder"]]
    before = results["encoder_ceiling_after_tiles_per_s"]
    for k in range(2, args.rounds + 1):
        shutil.rmtree(tmp / "out", ignore_errors=True)
        shutil.rmtree(tmp / "copies", ignore_errors=True)
        t0 = time.perf_counter()
        run_end_to_end(slide_path, tmp, bundle, options, args.copies)
        e2e = args.copies * tiles / (time.perf_counter() - t0)
        after = encoder_ceiling(bundle, args.batch_size, args.engine, device)
        ratios.append(e2e / ((before + after) / 2))
        print(
            f"round {k}: end-to-end {e2e:.1f} tiles/s, encoder alone after {after:.1f}; "
            f"ratio {ratios[-1]:.3f}"
        )
        before = after
    results["end_to_end_over_encoder_rounds"] = ratios
    results["end_to_end_over_encoder_median"] = float(np.median(ratios))
    print(
        f"end-to-end / encoder alone over {len(ratios)} rounds: median "
        f"{results['end_to_end_over_encoder_median']:.3f} ({', '.join(f'{r:.3f}' for r in ratios)})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--slide", type=Path)
    src.add_argument("--synthetic", help="WIDTHxHEIGHT of a synthetic 0.25 um/px slide")
    p.add_argument("--model", type=Path, default=ROOT / "model")
    p.add_argument("--mpp", type=float, default=None)
    p.add_argument("--workers", type=int, default=None, help="reading processes")
    p.add_argument("--read-threads", type=int, default=None, help="reading threads")
    p.add_argument("--level-factor", type=int, default=2, help="synthetic: 2 or 4 (Aperio)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--engine", default="auto", choices=["auto", "pytorch", "openvino"], help="as `embed`"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA where usable, else CPU; cuda without a usable GPU skips, saying why",
    )
    p.add_argument("--naive-tiles", type=int, default=512, help="tiles for the naive baseline")
    p.add_argument("--skip", nargs="*", default=[], choices=["encoder", "reading", "naive"])
    p.add_argument(
        "--copies", type=int, default=1, help="end to end as a run over N links to the slide"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="end to end, then the encoder alone, this many times; the median ratio",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"skipped: --device cuda, but no CUDA device is usable here (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU machine"
        )
        return
    device = None if args.device == "auto" else args.device
    settings = DeviceSettings.auto(device)

    tmp = Path(tempfile.mkdtemp(prefix="pathssl-bench-"))
    slide_path = args.slide
    if args.synthetic:
        from synthetic_slide import write_synthetic_slide

        w, h = (int(v) for v in args.synthetic.lower().split("x"))
        t0 = time.perf_counter()
        slide_path = write_synthetic_slide(
            tmp / f"synthetic_{w}x{h}.tif", w, h, level_factor=args.level_factor
        )
        print(
            f"synthetic slide {w}x{h} px written in {time.perf_counter() - t0:.0f} s "
            f"({slide_path.stat().st_size / 1e6:.0f} MB)"
        )
    bundle = load_bundle(args.model)
    print(
        f"slide {slide_path}; model {bundle.config.name} ({bundle.config.architecture}, "
        f"{bundle.config.input_size_px} px at {bundle.config.target_mpp} um/px); "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores; {settings.describe()}"
    )
    grid, downsample, plan_s, tissue_fraction = plan(slide_path, bundle, args.mpp)
    print(
        f"tissue and tiling: {plan_s:.2f} s; {len(grid)} tiles (tissue {tissue_fraction:.0%}), "
        f"level {grid.level}, read {grid.read_size_px} px"
    )
    results = {
        "slide": str(slide_path),
        "model": bundle.config.name,
        "tiles": len(grid),
        "tissue_and_tiling_s": plan_s,
    }
    if "encoder" not in args.skip:
        results["encoder_ceiling_before_tiles_per_s"] = encoder_ceiling(
            bundle, args.batch_size, args.engine, device
        )
        print(f"encoder ceiling: {results['encoder_ceiling_before_tiles_per_s']:.1f} tiles/s")
    if "reading" not in args.skip:
        results["reading_ceiling_tiles_per_s"] = reading_ceiling(
            slide_path, grid, downsample, args.workers, args.read_threads, args.batch_size
        )
        print(f"reading ceiling: {results['reading_ceiling_tiles_per_s']:.1f} tiles/s")

    options = EmbedOptions(
        device=device,
        mpp=args.mpp,
        batch_size=args.batch_size,
        num_workers=args.workers,
        read_threads=args.read_threads,
        engine=args.engine,
    )
    with TreeMemory() as mem:
        t0 = time.perf_counter()
        records = run_end_to_end(slide_path, tmp, bundle, options, args.copies)
        e2e_s = time.perf_counter() - t0
    results["slides"] = args.copies
    results["end_to_end_tiles_per_s"] = args.copies * len(grid) / e2e_s
    results["end_to_end_s"] = e2e_s
    embedding_s = sum(r["timings"]["embedding_s"] for r in records)
    results["embedding_only_tiles_per_s"] = args.copies * len(grid) / embedding_s
    results["peak_memory_mb"] = mem.peak_mb
    import resource

    results["peak_rss_main_process_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"end-to-end: {results['end_to_end_tiles_per_s']:.1f} tiles/s over {args.copies} x "
        f"{len(grid)} tiles "
        f"({e2e_s:.1f} s, embedding {embedding_s:.1f} s); "
        f"peak memory {mem.peak_mb:.0f} MB"
    )
    if "encoder" not in args.skip:  # again after: the machine's speed drifts (shared)
        after = encoder_ceiling(bundle, args.batch_size, args.engine, device)
        before = results["encoder_ceiling_before_tiles_per_s"]
        results["encoder_ceiling_after_tiles_per_s"] = after
        results["encoder_ceiling_tiles_per_s"] = (before + after) / 2
        print(
            f"encoder ceiling again: {after:.1f} tiles/s; mean "
            f"{results['encoder_ceiling_tiles_per_s']:.1f}"
        )
        results["end_to_end_over_encoder"] = (
            results["end_to_end_tiles_per_s"] / results["encoder_ceiling_tiles_per_s"]
        )
        if args.rounds > 1:
            more_rounds(results, args, slide_path, tmp, bundle, options, len(grid), device)
    ceilings = [
        results.get(k) for k in ("encoder_ceiling_tiles_per_s", "reading_ceiling_tiles_per_s")
    ]
    ceilings = [c for c in ceilings if c]
    if len(ceilings) == 2:
        results["ratio_to_lower_ceiling"] = results["end_to_end_tiles_per_s"] / min(ceilings)
        print(f"end-to-end / lower ceiling: {results['ratio_to_lower_ceiling']:.2f}")
        # on a CPU both ceilings use every core, so together they can reach only this
        shared = 1.0 / sum(1.0 / c for c in ceilings)
        results["shared_cores_bound_tiles_per_s"] = shared
        results["ratio_to_shared_cores_bound"] = results["end_to_end_tiles_per_s"] / shared
        print(
            f"reading and encoding on the same cores: at most {shared:.1f} tiles/s; "
            f"end-to-end reaches {results['ratio_to_shared_cores_bound']:.2f} of it"
        )
    if "naive" not in args.skip:
        n = min(args.naive_tiles, len(grid))
        results["naive_tiles_per_s"] = naive_baseline(
            slide_path, grid, bundle, args.batch_size, n, settings.device
        )
        results["speedup_over_naive"] = (
            results["end_to_end_tiles_per_s"] / results["naive_tiles_per_s"]
        )
        print(
            f"naive baseline: {results['naive_tiles_per_s']:.1f} tiles/s on {n} tiles; "
            f"speed-up {results['speedup_over_naive']:.2f}x"
        )
        naive_read = naive_baseline(
            slide_path, grid, bundle, args.batch_size, n, settings.device, encode=False
        )
        results["naive_reading_tiles_per_s"] = naive_read
        if "reading_ceiling_tiles_per_s" in results:
            results["reading_speedup_over_naive"] = (
                results["reading_ceiling_tiles_per_s"] / naive_read
            )
            print(
                f"naive reading alone: {naive_read:.1f} tiles/s; reading speed-up "
                f"{results['reading_speedup_over_naive']:.2f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
