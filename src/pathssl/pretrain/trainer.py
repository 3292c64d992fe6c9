"""The training loop: one process or many through torchrun (NCCL on GPU, gloo on CPU).

Checkpoints hold everything a resumed run needs to continue step for step: model (with
teacher/EMA networks, DINO's centre, MoCo's memory bank), optimiser, scaler, step and RNG
state. The data needs no state of its own: samples are functions of their index.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.data import PretrainDataset, RankBatchSampler, TileSource, collate_views
from pathssl.pretrain.methods import METHODS, SSLMethod
from pathssl.pretrain.schedules import cosine, warmup_cosine

log = logging.getLogger("pathssl")
LOG_FIELDS = ["step", "loss", "lr", "weight_decay", "momentum", "images_per_s", "collapse"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        return info, torch.device("cuda", info.local_rank)
    return info, torch.device("cpu")


def build_method(cfg: PretrainConfig, distributed: bool = False) -> SSLMethod:
    import timm

    if cfg.method not in METHODS:
        raise PathsslError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    backbone = timm.create_model(
        cfg.architecture, pretrained=False, num_classes=0, **cfg.timm_kwargs
    )
    return METHODS[cfg.method](
        backbone,
        backbone.num_features,
        cfg.input_px,
        distributed=distributed,
        **cfg.method_kwargs,
    )


def collapse_indicator(embeddings: torch.Tensor) -> float:
    """Std of L2-normalised embeddings across the batch, times sqrt(dim): about 1 when they
    spread over the sphere, 0 when they collapse to a point."""
    z = F.normalize(embeddings.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "no_wd": True}]


def _optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = _param_groups(model)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise PathsslError(f"unknown optimizer {cfg.optimizer!r} (adamw or sgd)")


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PathsslError(f"{path}: not a readable pathssl checkpoint ({exc})") from exc


class _Logger:
    def __init__(self, out: Path, resume_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out / "log.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if self.path.exists():  # keep only what the checkpoint covers: exact resume
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS).writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def pretrain(cfg: PretrainConfig, resume: bool = True, stop_after_steps: int | None = None) -> Path:
    """Train; returns the run folder (checkpoints/last.pt, log.csv, config.yaml).
    `stop_after_steps` ends this invocation early (as an interruption would), checkpointed."""
    import yaml

    info, device = init_distributed()
    out = Path(cfg.output)
    ckpt_dir = out / "checkpoints"
    if info.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    method = build_method(cfg, distributed=info.world > 1).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    method = method.to(memory_format=memory_format)
    optimizer = _optimizer(cfg, method)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = (
        torch.bfloat16
        if use_amp and torch.cuda.is_bf16_supported(including_emulation=False)
        else torch.float16
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start = 0
    last = ckpt_dir / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        torch.set_rng_state(state["rng"][info.rank % len(state["rng"])])
        log.info("resumed from %s at step %d", last, start)
    else:
        torch.manual_seed(cfg.seed + 1 + info.rank)  # per-rank randomness (e.g. drop-path)

    model: nn.Module = method
    if info.world > 1:
        model = nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None
        )

    source = TileSource(
        Path(cfg.manifest) if cfg.manifest else None,
        [Path(d) for d in cfg.image_dirs],
        cfg.target_mpps,
        cfg.input_px,
    )
    if info.is_main:
        lines = source.describe()
        (out / "data-sources.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            log.info("data: %s", line)
    views = [dataclasses.replace(v, **cfg.augment) for v in method.view_specs()]
    dataset = PretrainDataset(source, views, cfg.seed)
    end = cfg.steps if stop_after_steps is None else min(cfg.steps, start + stop_after_steps)
    sampler = RankBatchSampler(cfg.batch_size, info.rank, info.world, start, end)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate_views,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
    global_batch = cfg.batch_size * info.world
    peak_lr = cfg.lr * global_batch / 256
    logger = _Logger(out, start, info.is_main)

    step = start
    collapsed_rows = 0
    tic = time.perf_counter()
    method.train()
    for views in loader:
        lr = warmup_cosine(step, cfg.steps, peak_lr, cfg.min_lr, cfg.warmup_steps)
        wd = cosine(step, cfg.steps, cfg.weight_decay, cfg.weight_decay_end)
        momentum = cosine(step, cfg.steps, cfg.momentum, cfg.momentum_end)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if not group.get("no_wd"):
                group["weight_decay"] = wd
        views = [
            ((v.to(device, non_blocking=True) - mean) / std).contiguous(memory_format=memory_format)
            for v in views
        ]
        autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()
        with autocast:
            loss, embeddings = model(views, step / max(1, cfg.steps - 1))
        if not torch.isfinite(loss):
            raise PathsslError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if method.uses_momentum:
            method.momentum_update(momentum)
        step += 1

        if step % cfg.log_every == 0 or step == end:
            elapsed = time.perf_counter() - tic
            n_images = cfg.log_every * global_batch * len(views)
            row = {
                "step": step,
                "loss": float(loss.detach()),
                "lr": lr,
                "weight_decay": wd,
                "momentum": momentum,
                "images_per_s": n_images / max(elapsed, 1e-9),
                "collapse": collapse_indicator(embeddings),
            }
            logger.write(row)
            if info.is_main:
                log.info(
                    "step %d/%d loss %.4f lr %.2e collapse %.3f %.1f img/s",
                    step,
                    cfg.steps,
                    row["loss"],
                    lr,
                    row["collapse"],
                    row["images_per_s"],
                )
            tic = time.perf_counter()
            low = row["collapse"] < cfg.collapse_threshold
            if info.world > 1:  # every rank must stop at the same step
                flag = torch.tensor([float(low)], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                low = bool(flag.item())
            collapsed_rows = collapsed_rows + 1 if low else 0
            if collapsed_rows >= 5:
                end = step  # checkpoint below, then stop: the run is not learning
        if step % cfg.checkpoint_every == 0 or step == end:
            rng = [torch.get_rng_state()]
            if info.world > 1:
                rng = [torch.empty_like(rng[0]) for _ in range(info.world)]
                dist.all_gather_object(rng, torch.get_rng_state())
            if info.is_main:
                state = {
                    "model": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "rng": rng,
                    "config": cfg.to_dict(),
                }
                _save(last, state)
                if step == cfg.steps:
                    _save(ckpt_dir / f"step_{step:07d}.pt", state)
        if step >= end:
            break
    if collapsed_rows >= 5:
        logger.close()
        raise PathsslError(
            f"{out}: representations collapsed (indicator below {cfg.collapse_threshold} for "
            f"5 log rows, step {step}); lower the learning rate or change the method"
        )
    logger.close()
    if info.world > 1:  # each rank records a digest of its weights: DDP must keep them equal
        digest_dir = out / "rank_digests"
        digest_dir.mkdir(exist_ok=True)
        (digest_dir / f"rank{info.rank}.txt").write_text(state_digest(method) + "\n")
        dist.barrier()
    return out


def state_digest(module: nn.Module) -> str:
    """sha256 over the parameters (not the BatchNorm running statistics, which each rank
    updates from its own last batch until DDP re-broadcasts them)."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(module.named_parameters()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
