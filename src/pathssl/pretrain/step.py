"""The tile-encoder pretraining step the training loop drives: views of tiles from slides
and images, one self-supervised method's loss, EMA momentum, and the collapse monitor; a
run started from a bundle (`init`) loads its weights on a fresh start, scales the
backbone's learning rate (`init_lr_scale`) and may freeze the backbone for its first steps
(`freeze_backbone_steps`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.build import build_method, make_optimizer
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.data import PretrainDataset, RankBatchSampler, TileSource, collate_views
from pathssl.pretrain.init_bundle import check_init_options, load_parent_weights, resolve_init
from pathssl.training.distributed import DistEnv
from pathssl.training.schedules import cosine, warmup_cosine
from pathssl.training.step import StepOutput, TrainStep

LOG_FIELDS = ("step", "loss", "lr", "weight_decay", "momentum", "images_per_s", "collapse")


def collapse_indicator(embeddings: torch.Tensor) -> float:
    """Std of L2-normalised embeddings across the batch, times sqrt(dim): about 1 when they
    spread over the sphere, 0 when they collapse to a point."""
    z = F.normalize(embeddings.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


class TileStep(TrainStep):
    label = "pretrain"
    log_fields = LOG_FIELDS

    def __init__(self, cfg: PretrainConfig, env: DistEnv) -> None:
        cfg = resolve_init(cfg)  # the bundle's architecture and preprocessing (a no-op without)
        check_init_options(cfg)
        self.cfg, self.env = cfg, env
        method = build_method(cfg, distributed=env.distributed).to(env.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = method.to(memory_format=self.memory_format)
        self.optimizer = make_optimizer(cfg, method)
        self.source = TileSource(
            Path(cfg.manifest) if cfg.manifest else None,
            [Path(d) for d in cfg.image_dirs],
            cfg.target_mpps,
            cfg.input_px,
        )
        self.mean = torch.tensor(cfg.mean, device=env.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=env.device).view(1, 3, 1, 1)
        self.backbone_frozen = False  # at the step being taken
        self.peak_lr = cfg.lr * cfg.batch_size * env.world / 256  # scaled by global batch

    def record(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict()}

    def fresh_start(self) -> None:
        if self.cfg.init:  # student and teacher backbones from the bundle; heads stay fresh
            load_parent_weights(self.model, self.cfg)

    def check_checkpoint(self, record: Mapping[str, Any]) -> None:
        """A checkpoint continues the bundle its run started from, or none: never another."""
        theirs = (record.get("config") or {}).get("parent") or {}
        mine = self.cfg.parent
        if theirs.get("weights_sha256", "") == mine.get("weights_sha256", ""):
            return

        def named(parent: Mapping[str, Any]) -> str:
            sha = str(parent.get("weights_sha256", ""))[:12]
            return f"bundle {parent.get('name')!r} (sha256 {sha}...)" if parent else "no bundle"

        raise PathsslError(
            f"{self.cfg.output}: the checkpoint's run started from {named(theirs)}, this one "
            f"from {named(mine)}; resume with the run's own --init, or start afresh with "
            "--no-resume"
        )

    def frozen(self, step: int) -> bool:
        """Whether the backbone is frozen at this step (`freeze_backbone_steps`)."""
        return step < self.cfg.freeze_backbone_steps

    def batches(self, start: int, end: int) -> Iterable[list[torch.Tensor]]:
        cfg = self.cfg
        views = [dataclasses.replace(v, **cfg.augment) for v in self.model.view_specs()]
        return torch.utils.data.DataLoader(
            PretrainDataset(self.source, views, cfg.seed),
            batch_sampler=RankBatchSampler(
                cfg.batch_size, self.env.rank, self.env.world, start, end
            ),
            num_workers=cfg.num_workers,
            collate_fn=collate_views,
            pin_memory=self.env.device.type == "cuda",
            persistent_workers=False,
            # its own generator: a loader seeds its workers from the global RNG otherwise,
            # one draw more in a resumed run than in an uninterrupted one
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def schedule(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        return {
            "lr": warmup_cosine(step, cfg.steps, self.peak_lr, cfg.min_lr, cfg.warmup_steps),
            "weight_decay": cosine(step, cfg.steps, cfg.weight_decay, cfg.weight_decay_end),
            "momentum": cosine(step, cfg.steps, cfg.momentum, cfg.momentum_end),
        }

    def forward(self, net: nn.Module, batch: list[torch.Tensor], step: int) -> StepOutput:
        # a frozen backbone (and its teacher copies) runs as in inference: BatchNorm on its
        # running statistics, no dropout or drop-path, so that no step changes its state
        self.backbone_frozen = self.frozen(step)
        for backbone in self.model.backbones():
            backbone.train(not self.backbone_frozen)
        views = [
            ((v.to(self.env.device, non_blocking=True) - self.mean) / self.std).contiguous(
                memory_format=self.memory_format
            )
            for v in batch
        ]
        loss, embeddings = net(views, step / max(1, self.cfg.steps - 1))
        return StepOutput(loss, images=len(views) * len(views[0]), extras=embeddings)

    def before_optimizer_step(self, step: int) -> None:
        if self.frozen(step):  # no gradient, no update (nor weight decay, nor Adam moments)
            for p in self.model.backbone.parameters():
                p.grad = None

    def after_update(self, values: dict[str, float]) -> None:
        if self.model.uses_momentum:
            # the teacher's backbone stays the bundle's while the student's is frozen
            self.model.momentum_update(values["momentum"], backbone=not self.backbone_frozen)

    def metrics(self, output: StepOutput) -> dict[str, float]:
        return {"collapse": collapse_indicator(output.extras)}

    def unhealthy(self, row: dict[str, float]) -> bool:
        return row["collapse"] < self.cfg.collapse_threshold

    def failure(self, step: int) -> str:
        return (
            f"{self.cfg.output}: representations collapsed (indicator below "
            f"{self.cfg.collapse_threshold} for {self.patience} log rows, step {step}); "
            "lower the learning rate or change the method"
        )
