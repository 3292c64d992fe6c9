"""`pathssl pretrain`: self-supervised pretraining of a tile encoder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pathssl.cli.common import add_resume_arguments, add_set_argument

log = logging.getLogger("pathssl")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of a tile encoder",
        description="Self-supervised pretraining of a tile encoder on slides and images. "
        "Methods (config key `method`): simclr (SimCLR), dino (DINO), byol (BYOL), "
        "moco (MoCo v2), barlow (Barlow Twins), on any timm backbone (`architecture`). "
        "configs/pretrain/corpus.yaml is the bundled model's recipe; the run resumes from "
        "its last checkpoint unless --no-resume. --init BUNDLE continues from a model bundle "
        "(`pathssl export`, `pathssl import-weights`).",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (configs/pretrain/*.yaml; default: built-in SimCLR defaults)",
    )
    add_set_argument(p, "--set steps=50 --set method=dino")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="start from a model bundle's weights (student and teacher backbones; heads "
        "fresh), with its architecture, tile size, mean/std and resolution; a config value "
        "that contradicts the bundle is an error. Knobs: --set init_lr_scale=0.1 (backbone "
        "learning rate factor), --set freeze_backbone_steps=N (heads only, first N steps)",
    )
    add_resume_arguments(p)
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from pathssl.pretrain.config import PretrainConfig
    from pathssl.pretrain.trainer import pretrain
    from pathssl.training.distributed import init_distributed

    env = init_distributed()  # torchrun's environment, read once here and passed down
    cfg = PretrainConfig.from_yaml(args.config, args.overrides, init=args.init)
    out = pretrain(cfg, resume=not args.no_resume, stop_after_steps=args.stop_after, env=env)
    print(f"checkpoints in {out / 'checkpoints'}; log in {out / 'log.csv'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_pretrain(sub)
