"""`pathssl train-slide-encoder`: Giga-SSL-style contrastive training of the slide encoder on
embedded slides, through the one training loop (`pathssl.training`): single process or
torchrun, checkpoints and exact resume as in `pretrain`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.data import sample_generator
from pathssl.slide_ssl.data import EmbeddedSlide, find_embedded
from pathssl.slide_ssl.model import Projector, SlideEncoder, SlideEncoderConfig
from pathssl.slide_ssl.views import sample_view
from pathssl.training.distributed import DistEnv, init_distributed
from pathssl.training.loop import LoopSettings, train
from pathssl.training.schedules import warmup_cosine
from pathssl.training.step import StepOutput, TrainStep

Views = list[list[tuple[torch.Tensor, torch.Tensor]]]  # two views of each slide in a batch


@dataclass
class SlideSSLConfig:
    embeddings: str = "out"  # folder of embedded slides (features.h5 with augmented copies)
    output: str = "runs/slide-ssl"
    width: int = 256
    out_dim: int = 512
    stages: int = 2
    proj_dim: int = 128
    tiles_per_view: int = 256
    batch_size: int = 32  # slides per step and process (two views each)
    steps: int = 300
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    temperature: float = 0.05  # as in the authors' configuration
    inference_views: int = 16
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10

    def encoder_config(self, in_dim: int) -> SlideEncoderConfig:
        return SlideEncoderConfig(in_dim, self.width, self.out_dim, self.stages, self.proj_dim)

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            output=Path(self.output),
            steps=self.steps,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
        )


def load_slides(root: Path) -> list[EmbeddedSlide]:
    slides = [EmbeddedSlide.load(f) for f in find_embedded(root)]
    if len(slides) < 2:
        raise PathsslError(f"{root}: slide-level SSL needs at least two embedded slides")
    return slides


class SlideStep(TrainStep):
    """NT-Xent between two views (random tile subsets of augmented embeddings) per slide."""

    label = "slide-ssl"
    wrap_ddp = False  # the encoder runs once per slide: gradients are averaged after backward

    def __init__(self, cfg: SlideSSLConfig, env: DistEnv) -> None:
        from lightly.loss import NTXentLoss

        self.cfg, self.env = cfg, env
        self.slides = load_slides(Path(cfg.embeddings))
        self.in_dim = int(self.slides[0].features.shape[1])
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        encoder = SlideEncoder(cfg.encoder_config(self.in_dim)).to(env.device)
        projector = Projector(encoder.config).to(env.device)
        self.model = nn.ModuleDict({"encoder": encoder, "projector": projector})
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.criterion = NTXentLoss(temperature=cfg.temperature, gather_distributed=env.distributed)

    def record(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.cfg), "in_dim": self.in_dim}

    def schedule(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        return {"lr": warmup_cosine(step, cfg.steps, cfg.lr, cfg.lr * 0.01, cfg.warmup_steps)}

    def batches(self, start: int, end: int) -> Iterator[Views]:
        for step in range(start, end):
            yield self._views(step)

    def _views(self, step: int) -> Views:
        """A function of (seed, step, rank): slides drawn, then two views of each."""
        g = sample_generator(self.cfg.seed, step * self.env.world + self.env.rank)
        chosen = torch.randint(0, len(self.slides), (self.cfg.batch_size,), generator=g)
        views: Views = [[], []]
        for i in chosen.tolist():
            s = self.slides[i]
            source = s.augmented if s.augmented is not None else s.features
            for v in range(2):
                feats, coords = sample_view(source, s.grid_rc, self.cfg.tiles_per_view, g)
                views[v].append((feats.to(self.env.device), coords.to(self.env.device)))
        return views

    def forward(self, net: nn.Module, batch: Views, step: int) -> StepOutput:
        p0 = net["projector"](net["encoder"].forward_many(batch[0]))
        p1 = net["projector"](net["encoder"].forward_many(batch[1]))
        return StepOutput(self.criterion(p0, p1), images=2 * len(batch[0]))


def train_slide_encoder(
    cfg: SlideSSLConfig,
    resume: bool = True,
    stop_after_steps: int | None = None,
    *,
    env: DistEnv | None = None,
) -> Path:
    """Train; returns the run folder (checkpoints/last.pt, log.csv). The sparse gathers'
    backward is a scatter-add whose multithreaded CPU kernel sums in varying order, so
    deterministic kernels are switched on for exact resume."""
    env = init_distributed() if env is None else env
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        step = SlideStep(cfg, env)
        train(step, cfg.loop_settings(), env, resume=resume, stop_after_steps=stop_after_steps)
    finally:
        torch.use_deterministic_algorithms(previous)
    return Path(cfg.output)
