"""The embedding options as command-line arguments, shared by `pathssl embed` and the
container's process.py (both build EmbedOptions through embedding_options)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathssl.embed.options import EmbedOptions


def add_embedding_arguments(p: argparse.ArgumentParser) -> None:
    """The options `pathssl embed` and the container's process.py share."""
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle (default: /opt/ml/model, then the bundled model/)",
    )
    p.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 microns per pixel; overrides (and replaces missing) metadata",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="tiles per encoder forward pass (default: 64)"
    )
    p.add_argument(
        "--no-gpu-decode",
        dest="gpu_decode",
        action="store_false",
        help="on a GPU, read JPEG-tiled slides with OpenSlide on the CPU instead of decoding "
        "their tiles on the GPU (default: decode on the GPU)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "pytorch", "openvino", "openvino-bf16"],
        default="auto",
        help="what runs the encoder: auto = OpenVINO f32 on a CPU where it is installed (1.6x "
        "PyTorch for the bundled model, same features within 1e-5), else PyTorch; "
        "openvino-bf16: BF16 on a CPU that has it, for a model `pathssl check-precision` "
        "accepted (default: auto)",
    )
    p.add_argument(
        "--slide-encoder",
        default=None,
        metavar="NAME",
        help="slide embedding by a pretrained slide encoder (titan, feather, ...: see "
        "docs/slide-encoders.md) instead of the mean; needs --slide-encoder-weights and a "
        "tile encoder it was trained on (checked)",
    )
    p.add_argument(
        "--slide-encoder-weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder holding the slide encoder's downloaded weight files (never downloaded)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reading processes (default: cores - 1 with a GPU, none on a CPU)",
    )
    p.add_argument(
        "--read-threads",
        type=int,
        default=None,
        help="reading threads when there are no reading processes (default: cores, up to 4)",
    )


def embedding_options(args: argparse.Namespace, **more: object) -> EmbedOptions:
    """EmbedOptions from the shared options (add_embedding_arguments) and `more`."""
    return EmbedOptions(
        mpp=args.mpp,
        batch_size=args.batch_size,
        engine=args.engine,
        gpu_decode=args.gpu_decode,
        num_workers=args.workers,
        read_threads=args.read_threads,
        slide_encoder=args.slide_encoder,
        slide_encoder_weights=args.slide_encoder_weights,
        **more,
    )
