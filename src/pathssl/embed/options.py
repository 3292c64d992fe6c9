"""What the user chose for a run: every option that changes what a slide's outputs hold,
and how the work is done (device, engine, readers)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from pathssl.encoder.engines import ENGINES
from pathssl.errors import PathsslError
from pathssl.outputs.slide_outputs import OutputLayout

DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class EmbedOptions:
    mpp: float | None = None  # level-0 microns per pixel override
    tissue_mask: Path | None = None  # a mask file (one slide) or a folder of masks
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
    allow_upscale: bool = False  # read a slide coarser than the model's resolution (upscaled)
    slide_encoder: str | None = None  # a pretrained slide-encoder preset (docs/slide-encoders.md)
    slide_encoder_weights: Path | None = None  # the folder holding its downloaded weight files
    layout: OutputLayout = field(default_factory=OutputLayout)

    def __post_init__(self) -> None:
        """Every value checked before any slide is opened: one line per bad value."""
        problems = _problems(self)
        if problems:
            raise PathsslError("; ".join(problems))


def _whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _problems(o: EmbedOptions) -> list[str]:
    out = []
    if o.mpp is not None and not (math.isfinite(o.mpp) and 0 < o.mpp <= 1000):
        out.append(f"--mpp {o.mpp}: give the slide's microns per pixel, a number above 0")
    if not (math.isfinite(o.min_tissue_fraction) and 0 <= o.min_tissue_fraction <= 1):
        out.append(f"--min-tissue {o.min_tissue_fraction}: give a fraction from 0 to 1")
    if not (math.isfinite(o.mpp_tolerance) and 0 <= o.mpp_tolerance < 1):
        out.append(f"mpp_tolerance {o.mpp_tolerance}: give a fraction from 0 to below 1")
    if o.max_tiles is not None and not _whole(o.max_tiles, 1):
        out.append(f"--max-tiles {o.max_tiles}: give 1 or more, or leave it out for no cap")
    for name, value, least in (
        ("--batch-size", o.batch_size, 1),
        ("block_tiles", o.block_tiles, 1),
        ("--augmentations", o.augmentations, 0),
    ):
        if not _whole(value, least):
            out.append(f"{name} {value}: give a whole number of at least {least}")
    if o.num_workers is not None and not _whole(o.num_workers, 0):
        out.append(f"--workers {o.num_workers}: give 0 or more")
    if o.read_threads is not None and not _whole(o.read_threads, 0):
        out.append(f"--read-threads {o.read_threads}: give 0 (read in the main thread) or more")
    if o.device is not None and not DEVICE.match(str(o.device)):
        out.append(f"--device {o.device}: choose cpu, cuda or cuda:N")
    if o.engine not in ENGINES:
        out.append(f"--engine {o.engine}: choose one of {', '.join(ENGINES)}")
    if o.tissue_mask is not None and not Path(o.tissue_mask).exists():
        out.append(f"--tissue-mask {o.tissue_mask}: no such file or folder")
    return out + _slide_encoder_problems(o)


def _slide_encoder_problems(o: EmbedOptions) -> list[str]:
    """The preset exists and its weight files are in the folder (no slide opened yet)."""
    if o.slide_encoder is None:
        if o.slide_encoder_weights is not None:
            return ["--slide-encoder-weights needs --slide-encoder NAME"]
        return []
    from pathssl.aggregation.registry import SLIDE_ENCODERS, slide_encoder_names

    names = slide_encoder_names()
    if o.slide_encoder not in names:
        return [f"--slide-encoder {o.slide_encoder}: choose one of {', '.join(names)}"]
    preset = SLIDE_ENCODERS[o.slide_encoder]
    files = ", ".join(preset.weight_files)
    if o.slide_encoder_weights is None:
        return [
            f"--slide-encoder {o.slide_encoder} needs --slide-encoder-weights DIR, the folder "
            f"holding {files} from {preset.download}"
        ]
    folder = Path(o.slide_encoder_weights)
    missing = [f for f in preset.weight_files if not (folder / f).is_file()]
    if missing:
        return [
            f"--slide-encoder-weights {folder}: {missing[0]} not found there; download "
            f"{files} from {preset.download} into it"
        ]
    return []
