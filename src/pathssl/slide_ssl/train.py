"""`pathssl train-slide-encoder`: Giga-SSL-style contrastive training of the slide encoder on
embedded slides, single process or torchrun; checkpoints and exact resume as in `pretrain`."""

from __future__ import annotations

import csv
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.data import sample_generator
from pathssl.pretrain.schedules import warmup_cosine
from pathssl.pretrain.trainer import _save, init_distributed, load_checkpoint
from pathssl.slide_ssl.data import EmbeddedSlide, find_embedded
from pathssl.slide_ssl.model import Projector, SlideEncoder, SlideEncoderConfig
from pathssl.slide_ssl.views import sample_view

log = logging.getLogger("pathssl")


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


def load_slides(root: Path) -> list[EmbeddedSlide]:
    slides = [EmbeddedSlide.load(f) for f in find_embedded(root)]
    if len(slides) < 2:
        raise PathsslError(f"{root}: slide-level SSL needs at least two embedded slides")
    return slides


def train_slide_encoder(
    cfg: SlideSSLConfig, resume: bool = True, stop_after_steps: int | None = None
) -> Path:
    """Train; the sparse gathers' backward is a scatter-add whose multithreaded CPU kernel
    sums in varying order, so deterministic kernels are switched on for exact resume."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(cfg, resume, stop_after_steps)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(cfg: SlideSSLConfig, resume: bool, stop_after_steps: int | None) -> Path:
    from lightly.loss import NTXentLoss

    info, device = init_distributed()
    out = Path(cfg.output)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    slides = load_slides(Path(cfg.embeddings))
    in_dim = slides[0].features.shape[1]
    torch.manual_seed(cfg.seed)
    encoder = SlideEncoder(cfg.encoder_config(in_dim)).to(device)
    projector = Projector(encoder.config).to(device)
    model = nn.ModuleDict({"encoder": encoder, "projector": projector})
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    criterion = NTXentLoss(temperature=cfg.temperature, gather_distributed=info.world > 1)
    last = out / "checkpoints" / "last.pt"
    start = 0
    if resume and last.exists():
        state = load_checkpoint(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resumed from %s at step %d", last, start)
    log_path = out / "log.csv"
    if info.is_main:
        rows = []
        if log_path.exists():
            with open(log_path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= start]
        with open(log_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["step", "loss", "lr"])
            w.writeheader()
            w.writerows(rows)
    end = cfg.steps if stop_after_steps is None else min(cfg.steps, start + stop_after_steps)
    for step in range(start, end):
        lr = warmup_cosine(step, cfg.steps, cfg.lr, cfg.lr * 0.01, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        g = sample_generator(cfg.seed, step * info.world + info.rank)
        chosen = torch.randint(0, len(slides), (cfg.batch_size,), generator=g)
        views: list[list] = [[], []]
        for i in chosen.tolist():
            s = slides[i]
            source = s.augmented if s.augmented is not None else s.features
            for v in range(2):
                feats, coords = sample_view(source, s.grid_rc, cfg.tiles_per_view, g)
                views[v].append((feats.to(device), coords.to(device)))
        p0 = model["projector"](encoder.forward_many(views[0]))
        p1 = model["projector"](encoder.forward_many(views[1]))
        loss = criterion(p0, p1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if info.world > 1:  # average gradients as DDP would (the encoder runs once per slide)
            for p in model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= info.world
        optimizer.step()
        done = step + 1
        if info.is_main and (done % cfg.log_every == 0 or done == end):
            with open(log_path, "a", newline="") as fh:
                csv.DictWriter(fh, ["step", "loss", "lr"]).writerow(
                    {"step": done, "loss": float(loss.detach()), "lr": lr}
                )
            log.info(
                "slide-ssl step %d/%d loss %.4f lr %.2e", done, cfg.steps, float(loss.detach()), lr
            )
        if info.is_main and (done % cfg.checkpoint_every == 0 or done == end):
            _save(
                last,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": done,
                    "config": dataclasses.asdict(cfg),
                    "in_dim": in_dim,
                },
            )
    if info.world > 1:
        dist.barrier()
    return out
