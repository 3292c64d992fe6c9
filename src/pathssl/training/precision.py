"""Mixed precision on GPU: bf16 autocast where the GPU has it, else fp16 with a gradient
scaler; full precision elsewhere (the scaler is then a no-op with an empty state)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


class Precision:
    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled and device.type == "cuda"
        bf16 = self.enabled and torch.cuda.is_bf16_supported(including_emulation=False)
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype == torch.float16
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)
