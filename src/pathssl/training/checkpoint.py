"""Checkpoints: everything a resumed run needs to continue step for step.

A checkpoint holds the state of each trained part (model with its teacher/EMA networks and
buffers, optimiser, gradient scaler), the step (which is also the data position: samples
are functions of their index, and schedules functions of the step) and every rank's RNG
state, plus what the method records beside them (its config). Writes are atomic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from pathssl.errors import PathsslError
from pathssl.training.distributed import DistEnv, gather_rng_states

log = logging.getLogger("pathssl")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def save_atomic(path: Path, state: dict[str, Any]) -> None:
    """Write through a temporary file and rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's tensors and plain values (weights_only: no code runs while loading)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PathsslError(
            f"{path}: not a readable pathssl checkpoint ({reason}); point to a "
            "checkpoints/*.pt file written by `pathssl pretrain` or `train-slide-encoder`"
        ) from exc


class CheckpointStore:
    """checkpoints/last.pt (every N steps and at the end) and step_NNNNNNN.pt (the final step)."""

    def __init__(self, folder: Path, env: DistEnv) -> None:
        self.folder, self.env = Path(folder), env
        self.last = self.folder / "last.pt"
        self.folder.mkdir(parents=True, exist_ok=True)
        # what the loaded checkpoint holds beside the parts, step and RNG (None: none loaded)
        self.record: dict[str, Any] | None = None

    def resume(
        self,
        parts: Mapping[str, Stateful],
        check: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> tuple[int, bool]:
        """Load last.pt into `parts`: (step reached, whether this rank's RNG was restored).
        (0, False) without a checkpoint. `check` first sees what the checkpoint records
        beside the parts, step and RNG (its config), and raises if it is not this run's."""
        if not self.last.exists():
            return 0, False
        state = load_checkpoint(self.last)
        self.record = {k: v for k, v in state.items() if k not in (*parts, "step", "rng")}
        if check is not None:
            check(self.record)
        for name, part in parts.items():
            if name in state:  # a checkpoint from before a part existed keeps its fresh state
                part.load_state_dict(state[name])
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng[self.env.rank % len(rng)])
        step = int(state["step"])
        log.info("resumed from %s at step %d", self.last, step)
        return step, bool(rng)

    def save(
        self,
        parts: Mapping[str, Stateful],
        step: int,
        *,
        record: Mapping[str, Any],
        final: bool,
    ) -> None:
        """Collective (every rank gives its RNG state); rank 0 writes."""
        rng = gather_rng_states(self.env)
        if not self.env.is_main:
            return
        state = {name: part.state_dict() for name, part in parts.items()}
        state.update(step=step, rng=rng, **record)
        save_atomic(self.last, state)
        if final:
            save_atomic(self.folder / f"step_{step:07d}.pt", state)
