"""Per-step schedules: linear warm-up then cosine (learning rate); cosine ramps (weight decay,
EMA momentum)."""

from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float) -> float:
    if total <= 1:
        return end
    t = min(max(step / (total - 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


def warmup_cosine(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(step - warmup, max(1, total - warmup), peak, floor)
