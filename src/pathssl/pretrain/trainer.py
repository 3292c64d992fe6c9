"""`pretrain`: tile-encoder pretraining through the one training loop (`pathssl.training`),
in one process or many through torchrun (NCCL on GPU, gloo on CPU).

Checkpoints hold everything a resumed run needs to continue step for step: model (with
teacher/EMA networks, DINO's centre, MoCo's memory bank), optimiser, scaler, step and RNG
state. The data needs no state of its own: samples are functions of their index.

A run may start from a model bundle (`init`, `pathssl pretrain --init BUNDLE`): see
`pretrain.init_bundle`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pathssl.pretrain.build import build_method
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.init_bundle import check_init_options, resolve_init
from pathssl.pretrain.step import LOG_FIELDS, TileStep, collapse_indicator
from pathssl.training.checkpoint import load_checkpoint
from pathssl.training.distributed import DistEnv, init_distributed, state_digest
from pathssl.training.loop import LoopSettings, train

log = logging.getLogger("pathssl")
# load_checkpoint, state_digest, build_method: imported from here by tests and tools
__all__ = [
    "LOG_FIELDS",
    "build_method",
    "collapse_indicator",
    "load_checkpoint",
    "loop_settings",
    "pretrain",
    "state_digest",
]


def loop_settings(cfg: PretrainConfig) -> LoopSettings:
    return LoopSettings(
        output=Path(cfg.output),
        steps=cfg.steps,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        grad_clip=cfg.grad_clip,
        amp=cfg.amp,
        tensorboard=True,
    )


def pretrain(
    cfg: PretrainConfig,
    resume: bool = True,
    stop_after_steps: int | None = None,
    *,
    env: DistEnv | None = None,
) -> Path:
    """Train; returns the run folder (checkpoints/last.pt, log.csv, config.yaml).
    `stop_after_steps` ends this invocation early (as an interruption would), checkpointed.
    `env`: the process's place under torchrun (read from the environment when not given)."""
    import yaml

    env = init_distributed() if env is None else env
    cfg = resolve_init(cfg)  # with `init`: the bundle's architecture, preprocessing, parent
    check_init_options(cfg)
    out = Path(cfg.output)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    step = TileStep(cfg, env)
    if env.is_main:
        lines = step.source.describe()
        (out / "data-sources.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            log.info("data: %s", line)
    train(step, loop_settings(cfg), env, resume=resume, stop_after_steps=stop_after_steps)
    return out
