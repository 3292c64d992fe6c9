"""Model bundles: `import-weights` (a public checkpoint), `init-model` (random weights),
`export` (a pretraining checkpoint)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pathssl.cli.common import print_bundle

log = logging.getLogger("pathssl")


def _add_import(sub: argparse._SubParsersAction) -> None:
    from pathssl.encoder.presets import PRESETS

    p = sub.add_parser(
        "import-weights",
        help="turn a downloaded public checkpoint into a model bundle",
        description="Presets: "
        + "; ".join(f"{name}: {PRESETS[name].description}" for name in sorted(PRESETS)),
    )
    p.add_argument(
        "--preset", required=True, choices=sorted(PRESETS), help="which published model it is"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="the downloaded weights (.safetensors, or .bin/.pth read as tensors only)",
    )
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.set_defaults(func=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from pathssl.encoder.import_weights import import_weights

    config = import_weights(args.preset, args.checkpoint, args.output)
    print_bundle(args.output, config)
    return 0


def _add_init_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init-model", help="write an UNTRAINED (random) bundle of a timm model")
    p.add_argument("--architecture", required=True, help="timm model name, e.g. resnet18")
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--input-size", type=int, default=224, help="tile side in pixels (default: 224)")
    p.add_argument("--mpp", type=float, default=0.5, help="tile resolution in um/px (default: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    p.set_defaults(func=_run_init_model)


def _run_init_model(args: argparse.Namespace) -> int:
    from pathssl.encoder.export import random_bundle

    config = random_bundle(
        args.output, args.architecture, args.input_size, args.mpp, seed=args.seed
    )
    print(f"wrote {args.output} ({config.name}, UNTRAINED, sha256 {config.weights_sha256})")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="training checkpoint -> model bundle for `embed`")
    p.add_argument("checkpoint", type=Path, help="a `pathssl pretrain` checkpoint (.pt)")
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--name", default=None, help="model name in config.json (default: method-arch-steps)"
    )
    p.add_argument(
        "--network",
        choices=("online", "momentum"),
        default=None,
        help="which network to ship: the online one, or the momentum (EMA) copy, MoCo's key "
        "encoder or DINO's and BYOL's teacher (default: teacher for DINO and BYOL, online "
        "otherwise)",
    )
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathssl.pretrain.export import export_checkpoint

    config = export_checkpoint(args.checkpoint, args.output, args.name, args.network)
    print_bundle(args.output, config)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_import(sub)
    _add_init_model(sub)
    _add_export(sub)
