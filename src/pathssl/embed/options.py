"""What the user chose for a run: every option that changes what a slide's outputs hold,
and how the work is done (device, engine, readers)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pathssl.outputs.slide_outputs import OutputLayout

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
