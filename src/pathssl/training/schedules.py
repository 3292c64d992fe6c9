"""Per-step schedules: linear warm-up then cosine (learning rate); cosine ramps (weight decay,
EMA momentum). Pure functions of the step, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def cosine(step: int, total: int, start: float, end: float) -> float:
    if total <= 1:
        return end
    t = min(max(step / (total - 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


def warmup_cosine(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(step - warmup, max(1, total - warmup), peak, floor)


def set_hyperparameters(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    """This step's learning rate on every parameter group (times the group's `lr_scale`,
    where it has one), and its weight decay (when scheduled) on the groups that decay (not
    those marked `no_wd`: biases, norms)."""
    for group in optimizer.param_groups:
        group["lr"] = values["lr"] * group.get("lr_scale", 1.0)
        if "weight_decay" in values and not group.get("no_wd"):
            group["weight_decay"] = values["weight_decay"]
