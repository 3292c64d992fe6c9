"""The training loop, for every method: schedules, mixed precision, gradient clipping,
logging (CSV, TensorBoard), checkpoints every N steps, early stop, exact resume, and ranks
under torchrun. A method provides a `TrainStep`; this module provides the rest.

Exact resume: the checkpoint restores model, optimiser, scaler and each rank's RNG state;
the step is the data position (batches are functions of their step) and fixes the
schedules; the log drops rows past it. Stopping after k steps and resuming therefore gives
the weights and log of one uninterrupted run, bit for bit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathssl.errors import PathsslError
from pathssl.training.checkpoint import CheckpointStore
from pathssl.training.distributed import (
    DistEnv,
    all_ranks,
    average_gradients,
    barrier,
    state_digest,
)
from pathssl.training.logs import RunLog
from pathssl.training.precision import Precision
from pathssl.training.schedules import set_hyperparameters
from pathssl.training.step import StepOutput, TrainStep

log = logging.getLogger("pathssl")


@dataclass(frozen=True)
class LoopSettings:
    output: Path  # the run folder: checkpoints/, log.csv
    steps: int  # of the whole run (schedules span it)
    seed: int  # per-rank randomness of a fresh run: seed + 1 + rank
    checkpoint_every: int
    log_every: int
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    amp: bool = False  # mixed precision (on GPU only)
    tensorboard: bool = False  # also log to output/tensorboard where installed


def train(
    step: TrainStep,
    settings: LoopSettings,
    env: DistEnv,
    *,
    resume: bool = True,
    stop_after_steps: int | None = None,
) -> int:
    """Train from the last checkpoint (or from scratch) to `settings.steps`, or for
    `stop_after_steps` steps of this invocation (as an interruption would, checkpointed).
    Returns the step reached."""
    run = _Run(step, settings, env)
    start = run.begin(resume)
    end = settings.steps
    if stop_after_steps is not None:
        end = min(end, start + stop_after_steps)
    try:
        done = run.steps(start, end)
    finally:
        run.log.close()
    if run.unhealthy_rows >= step.patience:
        raise PathsslError(step.failure(done))
    if env.distributed:  # each rank records a digest of its weights: they must be equal
        digests = Path(settings.output) / "rank_digests"
        digests.mkdir(parents=True, exist_ok=True)
        (digests / f"rank{env.rank}.txt").write_text(state_digest(step.model) + "\n")
        barrier(env)
    return done


class _Run:
    """One invocation's state around the step: precision, checkpoints, log, timers."""

    def __init__(self, step: TrainStep, settings: LoopSettings, env: DistEnv) -> None:
        self.step, self.settings, self.env = step, settings, env
        self.out = Path(settings.output)
        self.precision = Precision(settings.amp, env.device)
        self.store = CheckpointStore(self.out / "checkpoints", env)
        self.parts = {
            "model": step.model,
            "optimizer": step.optimizer,
            "scaler": self.precision.scaler,
        }
        self.unhealthy_rows = 0
        self.images, self.tic = 0, time.perf_counter()

    def begin(self, resume: bool) -> int:
        start, restored = (
            self.store.resume(self.parts, check=self.step.check_checkpoint)
            if resume
            else (0, False)
        )
        if self.store.record is None:  # no checkpoint: the step's initial state
            self.step.fresh_start()
        if not restored:
            torch.manual_seed(self.settings.seed + 1 + self.env.rank)  # e.g. drop-path
        self.net = self._wrap()
        self.log = RunLog(
            self.out,
            self.step.log_fields,
            resume_step=start,
            enabled=self.env.is_main,
            tensorboard=self.settings.tensorboard,
        )
        return start

    def _wrap(self) -> nn.Module:
        if not (self.env.distributed and self.step.wrap_ddp):
            return self.step.model
        device = self.env.device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.step.model, device_ids=ids)

    def steps(self, start: int, end: int) -> int:
        done, every = start, self.settings
        self.step.model.train()
        self.images, self.tic = 0, time.perf_counter()
        # range first: zip stops there without drawing one batch too many
        for index, batch in zip(range(start, end), self.step.batches(start, end), strict=False):
            output, values = self._update(index, batch)
            done = index + 1
            stop = False
            if done % every.log_every == 0 or done == end:
                stop = self._log(done, output, values)
            if stop or done % every.checkpoint_every == 0 or done == end:
                final = done == self.settings.steps
                self.store.save(self.parts, done, record=self.step.record(), final=final)
            if stop:
                break
        return done

    def _update(self, index: int, batch: Any) -> tuple[StepOutput, dict[str, float]]:
        step, optimizer, scaler = self.step, self.step.optimizer, self.precision.scaler
        values = step.schedule(index)
        set_hyperparameters(optimizer, values)
        with self.precision.autocast():
            output = step.forward(self.net, batch, index)
        if not torch.isfinite(output.loss):
            raise PathsslError(
                f"{self.out}: loss is {output.loss.item()} at step {index}; lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(output.loss).backward()
        if not step.wrap_ddp:
            average_gradients(self.env, step.model)
        step.before_optimizer_step(index)
        if self.settings.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(step.model.parameters(), self.settings.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step.after_update(values)
        self.images += output.images * self.env.world
        return output, values

    def _log(self, done: int, output: StepOutput, values: dict[str, float]) -> bool:
        """Write a log row; True when the run should stop (unhealthy for `patience` rows)."""
        elapsed = time.perf_counter() - self.tic
        row = {
            "step": done,
            "loss": float(output.loss.detach()),
            **values,
            "images_per_s": self.images / max(elapsed, 1e-9),
            **self.step.metrics(output),
        }
        self.log.write(row)
        if self.env.is_main:
            extra = "".join(
                f" {k} {row[k]:.4g}" for k in self.step.log_fields if k not in ("step", "loss")
            )
            label, steps = self.step.label, self.settings.steps
            log.info("%s step %d/%d loss %.4f%s", label, done, steps, row["loss"], extra)
        self.images, self.tic = 0, time.perf_counter()
        unhealthy = all_ranks(self.env, self.step.unhealthy(row))  # every rank stops together
        self.unhealthy_rows = self.unhealthy_rows + 1 if unhealthy else 0
        return self.unhealthy_rows >= self.step.patience
