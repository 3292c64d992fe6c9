"""`pathssl embed`: slides in, one folder of outputs per slide."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pathssl.embed.arguments import add_embedding_arguments, embedding_options

log = logging.getLogger("pathssl")


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed whole-slide images: tiles, feature map, slide vector")
    p.add_argument("paths", nargs="+", type=Path, help="slide files or folders of slides")
    p.add_argument("--output", "-o", type=Path, required=True, help="one folder per slide here")
    add_embedding_arguments(p)
    p.add_argument(
        "--tissue-mask",
        type=Path,
        default=None,
        help="tissue mask image covering the slide (non-zero = tissue); or a folder of masks, "
        "matched to slides by name: the mask of x.svs is x.png/.tif/.mha/... or x_mask.*, "
        "looked for at the slide's relative folder first (a slide without one is said in one "
        "line and its tissue detected)",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=0.25,
        help="minimum tissue fraction of a kept tile (default 0.25)",
    )
    p.add_argument(
        "--drop-flagged",
        action="store_true",
        help="leave tiles flagged by tile QC (marker ink, out of focus) out of every output; "
        "by default they are kept and flagged in features.h5, run.json and the preview",
    )
    p.add_argument(
        "--keep-ink",
        action="store_true",
        help="do not exclude marker ink from tissue (for stains with green or blue "
        "components, e.g. Masson's trichrome, which the ink rules would take for ink)",
    )
    p.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        help="cap per slide, by even deterministic subsampling",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument(
        "--augmentations",
        type=int,
        default=0,
        metavar="K",
        help="also store K augmented copies of every tile's features (slide SSL)",
    )
    _add_run_arguments(p)
    p.set_defaults(func=_run_embed)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Upscaling, resume and sharding: how a run treats slides and earlier outputs."""
    p.add_argument(
        "--allow-upscale",
        action="store_true",
        help="embed slides scanned more than 2x coarser than the model's resolution (their "
        "tiles are upscaled); refused by default",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="recompute every slide; by default outputs made by the same slide file, "
        "options, model, device numerics and pathssl version are reused, all others redone",
    )
    p.add_argument(
        "--on-mismatch",
        choices=["redo", "refuse"],
        default="redo",
        help="existing outputs made differently (another model, options, slide file, device "
        "numerics or pathssl version): "
        "redo them (default), or refuse: the slide fails with one line saying what differs",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N|env",
        help="embed only slides I, I+N, ... of the sorted list (0 <= I < N); `env` takes I and "
        "N from torchrun's or Slurm's variables. Without it, a run launched by torchrun or "
        "srun as several tasks shards itself; otherwise every slide is embedded",
    )


def _run_embed(args: argparse.Namespace) -> int:
    from pathssl.runtime import configure_openmp

    configure_openmp()  # before PyTorch loads
    from pathssl.embed.options import EmbedOptions
    from pathssl.embed.run import RunSettings, embed_slides
    from pathssl.embed.shard import resolve_shard
    from pathssl.encoder.bundle import load_bundle

    options: EmbedOptions = embedding_options(  # checks every value before any work
        args,
        tissue_mask=args.tissue_mask,
        min_tissue_fraction=args.min_tissue,
        exclude_ink=not args.keep_ink,
        drop_flagged=args.drop_flagged,
        max_tiles=args.max_tiles,
        device=args.device,
        compile=args.compile,
        augmentations=args.augmentations,
        allow_upscale=args.allow_upscale,
    )
    shard, note = resolve_shard(args.shard, os.environ)  # the environment is read here only
    if note:
        log.warning(note)
    run = RunSettings(resume=not args.no_resume, mismatch=args.on_mismatch, shard=shard)
    bundle = load_bundle(args.model)
    _log_model(bundle)
    reports = embed_slides(args.paths, args.output, bundle, options, run=run)
    _print_outcome(reports, args.output / shard.summary_name)
    return 1 if any(r.status == "failed" for r in reports) else 0


def _print_outcome(reports: list, summary: Path) -> None:
    count = {s: sum(r.status == s for r in reports) for s in ("complete", "reused", "skipped")}
    failed = [r for r in reports if r.status == "failed"]
    redone = sum(r.status == "complete" and (r.note or "").startswith("redone") for r in reports)
    print(
        f"{count['complete']} embedded"
        + (f" ({redone} redone: their outputs were made differently)" if redone else "")
        + f", {count['reused']} reused (same slide, options and model), "
        + (f"{count['skipped']} skipped (held by another process), " if count["skipped"] else "")
        + f"{len(failed)} failed; summary in {summary}"
    )
    flagged = sum(r.qc_flagged for r in reports)
    if flagged:
        dropped = sum(r.qc_dropped for r in reports)
        print(f"tile QC: {flagged} tiles flagged (ink or blur), {dropped} dropped; see run.json")
    for r in failed:
        print(f"FAILED {r.error}", file=sys.stderr)


def _log_model(bundle) -> None:
    from pathssl.encoder.inference import DeviceSettings

    log.info("device %s", DeviceSettings.auto().describe())
    for line in bundle.describe():
        (log.warning if line.startswith("WARNING") else log.info)(line)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_embed(sub)
