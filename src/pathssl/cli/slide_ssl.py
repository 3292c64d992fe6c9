"""Slide-level SSL: `train-slide-encoder`, `export-slide-encoder`, `evaluate-slides`,
`make-slide-cohort`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pathssl.cli.common import add_resume_arguments, add_set_argument

log = logging.getLogger("pathssl")


def _add_slide_ssl(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-slide-encoder", help="slide-level SSL (Giga-SSL) on embedded slides")
    p.add_argument("embeddings", type=Path, help="folder of `pathssl embed` outputs")
    p.add_argument("--output", type=Path, required=True, help="run folder (checkpoints, log)")
    add_set_argument(p, "--set steps=300 --set tiles_per_view=256")
    add_resume_arguments(p)
    p.set_defaults(func=_run_slide_ssl)

    p = sub.add_parser("export-slide-encoder", help="add a trained slide encoder to a bundle")
    p.add_argument("checkpoint", type=Path, help="a `train-slide-encoder` checkpoint")
    p.add_argument("--bundle", type=Path, required=True, help="model bundle to add it to")
    p.set_defaults(func=_run_export_slide)

    p = sub.add_parser("evaluate-slides", help="slide-level linear evaluation (ROC-AUC)")
    p.add_argument("embeddings", type=Path, help="folder of `pathssl embed` outputs")
    p.add_argument("labels", type=Path, help="CSV with columns slide,label")
    p.add_argument(
        "--slide-encoder",
        type=Path,
        default=None,
        help="bundle with slide_encoder.json (compared with mean pooling)",
    )
    p.add_argument("--output", type=Path, default=None, help="JSON results")
    p.add_argument("--plot", type=Path, default=None, help="learning-curve PNG")
    p.set_defaults(func=_run_evaluate_slides)

    p = sub.add_parser("make-slide-cohort", help="synthetic cohorts from real tissue tiles")
    p.add_argument(
        "--task",
        choices=["segregated", "clustered", "composition"],
        required=True,
        help="what tells the two classes apart (README, Slide embeddings without labels)",
    )
    p.add_argument("--slides", type=int, default=200, help="slides in the cohort (default: 200)")
    p.add_argument(
        "--augmentations",
        type=int,
        default=4,
        help="augmented feature copies per slide (default: 4)",
    )
    p.add_argument(
        "--pool-size", type=int, default=16, help="real tiles per tissue type (default: 16)"
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model bundle (default: the bundled model/)"
    )
    p.add_argument("--shared", type=Path, default=None, help="../shared/data, if present")
    p.add_argument(
        "--slide",
        type=Path,
        required=True,
        help="an H&E slide whose tissue fills the first pool, and the second too without "
        "--shared (e.g. tests/data/CMU-1-Small-Region.svs)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--output", type=Path, required=True, help="cohort folder to write")
    p.set_defaults(func=_run_cohort)


def _run_slide_ssl(args: argparse.Namespace) -> int:
    from pathssl.slide_ssl.train import SlideSSLConfig, train_slide_encoder
    from pathssl.training.distributed import init_distributed
    from pathssl.training.overrides import build_config

    env = init_distributed()  # torchrun's environment, read once here and passed down
    base = {"embeddings": str(args.embeddings), "output": str(args.output)}
    cfg = build_config(SlideSSLConfig, base=base, overrides=args.overrides)
    out = train_slide_encoder(cfg, not args.no_resume, args.stop_after, env=env)
    print(f"checkpoints in {out / 'checkpoints'}; log in {out / 'log.csv'}")
    return 0


def _run_export_slide(args: argparse.Namespace) -> int:
    from pathssl.slide_ssl.bundle import export_slide_encoder

    record = export_slide_encoder(args.checkpoint, args.bundle)
    print(f"added slide encoder to {args.bundle} (sha256 {record['weights_sha256']})")
    return 0


def _run_evaluate_slides(args: argparse.Namespace) -> int:
    from pathssl.slide_ssl.evaluate import (
        evaluate_slides,
        format_slide_table,
        plot_learning_curves,
        write_json,
    )

    results = evaluate_slides(args.embeddings, args.labels, args.slide_encoder)
    print(format_slide_table(args.embeddings.name, results))
    if args.output:
        write_json(args.output, results)
    if args.plot:
        plot_learning_curves({args.embeddings.name: results}, args.plot)
    return 0


def _run_cohort(args: argparse.Namespace) -> int:
    from pathssl.encoder.bundle import load_bundle
    from pathssl.slide_ssl.cohorts import build_cohort, default_pools, embed_pool

    a, b = default_pools(args.shared, args.slide)
    bundle = load_bundle(args.model)
    pools = [embed_pool(bundle, a, args.augmentations), embed_pool(bundle, b, args.augmentations)]
    labels = build_cohort(
        pools, args.task, args.slides, args.output, seed=args.seed, pool_size=args.pool_size
    )
    print(f"{args.slides} slides in {args.output}; labels in {labels}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_slide_ssl(sub)
