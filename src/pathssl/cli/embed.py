"""`pathssl embed`: slides in, one folder of outputs per slide."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pathssl.embed.arguments import add_embedding_arguments, embedding_options
from pathssl.errors import PathsslError

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
        help="tissue mask image covering the slide (non-zero = tissue)",
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
    p.add_argument("--no-resume", action="store_true", help="recompute complete slides")
    p.set_defaults(func=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from pathssl.runtime import configure_openmp

    configure_openmp()  # before PyTorch loads
    from pathssl.embed import embed_slides
    from pathssl.encoder.bundle import load_bundle

    if args.tissue_mask is not None and len(args.paths) != 1:
        raise PathsslError("--tissue-mask goes with exactly one slide")
    bundle = load_bundle(args.model)
    _log_model(bundle)
    options = embedding_options(
        args,
        tissue_mask=args.tissue_mask,
        min_tissue_fraction=args.min_tissue,
        exclude_ink=not args.keep_ink,
        drop_flagged=args.drop_flagged,
        max_tiles=args.max_tiles,
        device=args.device,
        compile=args.compile,
        augmentations=args.augmentations,
    )
    reports = embed_slides(args.paths, args.output, bundle, options, resume=not args.no_resume)
    failed = [r for r in reports if r.status == "failed"]
    done = sum(r.status == "complete" for r in reports)
    locked = sum(r.status == "skipped" and r.error is not None for r in reports)
    skipped = sum(r.status == "skipped" for r in reports) - locked
    print(
        f"{done} embedded, {skipped} skipped (complete), "
        + (f"{locked} skipped (held by another process), " if locked else "")
        + f"{len(failed)} failed; summary in {args.output / 'summary.json'}"
    )
    flagged = sum(r.qc_flagged for r in reports)
    if flagged:
        dropped = sum(r.qc_dropped for r in reports)
        print(f"tile QC: {flagged} tiles flagged (ink or blur), {dropped} dropped; see run.json")
    for r in failed:
        print(f"FAILED {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _log_model(bundle) -> None:
    from pathssl.encoder.inference import DeviceSettings

    log.info("device %s", DeviceSettings.auto().describe())
    for line in bundle.describe():
        (log.warning if line.startswith("WARNING") else log.info)(line)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_embed(sub)
