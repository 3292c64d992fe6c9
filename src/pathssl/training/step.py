"""What a method gives the training loop: a `TrainStep`.

The step owns the model (on its device), the optimiser, the data and the loss; the loop owns
everything around them (precision, gradients, logging, checkpoints, resume, ranks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class StepOutput:
    loss: torch.Tensor
    images: int  # views this rank processed (of images, or of slides): the log's images_per_s
    extras: Any = None  # what `TrainStep.metrics` needs at log steps (e.g. embeddings)


class TrainStep:
    """Subclasses set `model` and `optimizer` and implement `batches` and `forward`."""

    label = "train"  # prefix of the console log lines
    log_fields: tuple[str, ...] = ("step", "loss", "lr")  # log.csv columns, in order
    wrap_ddp = True  # under torchrun: DDP wraps the model; else gradients are averaged
    patience = 5  # unhealthy log rows in a row that stop the run (checkpointed)
    model: nn.Module  # everything trained and checkpointed (teachers and buffers included)
    optimizer: torch.optim.Optimizer

    def record(self) -> dict[str, Any]:
        """What checkpoints hold beside the training state (the config, at least)."""
        return {}

    def batches(self, start: int, end: int) -> Iterable[Any]:
        """One batch per step from `start` (resume) to `end`, each a function of its step."""
        raise NotImplementedError

    def schedule(self, step: int) -> dict[str, float]:
        """This step's hyperparameters: `lr`, optionally `weight_decay`, and any other value
        to log or to use in `after_update` (e.g. EMA momentum)."""
        raise NotImplementedError

    def forward(self, net: nn.Module, batch: Any, step: int) -> StepOutput:
        """The loss of one batch; `net` is `model`, or its DDP wrapper under torchrun."""
        raise NotImplementedError

    def fresh_start(self) -> None:
        """Once, when the run starts without a checkpoint, before its first step (e.g. the
        initial weights from a model bundle)."""

    def check_checkpoint(self, record: Mapping[str, Any]) -> None:
        """Before a checkpoint is loaded to resume, what `record` wrote into it: raise
        PathsslError when it is not this run's (e.g. it started from another bundle)."""

    def before_optimizer_step(self, step: int) -> None:
        """After the backward pass (gradients averaged over ranks), before clipping and the
        optimiser step (e.g. drop the gradients of parameters frozen at this step)."""

    def after_update(self, values: dict[str, float]) -> None:
        """After the optimiser step (e.g. the EMA teacher's update)."""

    def metrics(self, output: StepOutput) -> dict[str, float]:
        """Extra log values at log steps."""
        return {}

    def unhealthy(self, row: dict[str, float]) -> bool:
        """Whether a log row shows a run that is not learning (e.g. collapse)."""
        return False

    def failure(self, step: int) -> str:
        """The one-line error when `patience` unhealthy rows stopped the run."""
        return f"training stopped unhealthy at step {step}"
