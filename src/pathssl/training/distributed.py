"""The torchrun/DDP environment, read once at the entry point, and the few collective
operations the loop needs (NCCL on GPU, gloo on CPU)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank among `world` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read torchrun's variables (absent: one process) and join the process group."""
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, local_rank = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    device = CPU
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    return DistEnv(rank, world, local_rank, device)


def gather_rng_states(env: DistEnv) -> list[torch.Tensor]:
    """Every rank's CPU RNG state, in rank order (collective: all ranks must call it)."""
    own = torch.get_rng_state()
    if not env.distributed:
        return [own]
    states = [torch.empty_like(own) for _ in range(env.world)]
    dist.all_gather_object(states, own)
    return states


def all_ranks(env: DistEnv, flag: bool) -> bool:
    """True when `flag` holds on every rank, so that all ranks take the same branch."""
    if not env.distributed:
        return flag
    value = torch.tensor([float(flag)], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def average_gradients(env: DistEnv, model: nn.Module) -> None:
    """Average gradients over ranks as DDP would, for models that DDP cannot wrap."""
    if not env.distributed:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= env.world


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def state_digest(module: nn.Module) -> str:
    """sha256 over the parameters (not the BatchNorm running statistics, which each rank
    updates from its own last batch until DDP re-broadcasts them)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.named_parameters()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
