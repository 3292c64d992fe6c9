"""Which share of a slide list this process embeds. Sharding happens only on purpose: when
asked (`--shard I/N`, or `--shard env` to trust torchrun's or Slurm's variables) or when this
very command was launched as several tasks (torchrun with WORLD_SIZE > 1, srun with
SLURM_STEP_NUM_TASKS > 1). A job script or an interactive shell inside an allocation also
carries SLURM_NTASKS or WORLD_SIZE: that alone never shards, it is said in one line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pathssl.errors import PathsslError

_FIX = "pass --shard I/N (0 <= I < N) or leave --shard out to embed every slide"


@dataclass(frozen=True)
class Shard:
    """Slides rank, rank + world, ... of the sorted list (disjoint, deterministic); one GPU
    per process (local_rank)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    source: str = "none"  # "none", "--shard", "torchrun", "srun" or "environment (--shard env)"

    @property
    def summary_name(self) -> str:
        return "summary.json" if self.world == 1 else f"summary-rank{self.rank}.json"

    def owns(self, index: int) -> bool:
        return index % self.world == self.rank

    def describe(self) -> dict[str, object]:
        return {"rank": self.rank, "world": self.world, "source": self.source}


def parse_shard(text: str) -> Shard:
    """`I/N` as given to --shard."""
    rank, sep, world = text.partition("/")
    try:
        r, w = int(rank), int(world)
    except ValueError:
        r, w = -1, 0
    if not sep or not 0 <= r < w:
        raise PathsslError(f"--shard {text!r}: expected I/N with 0 <= I < N; {_FIX}")
    return Shard(r, w, 0, "--shard")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise PathsslError(
            f"{key}={value!r} in the environment is not a whole number; unset it or {_FIX}"
        ) from None


def _from_variables(env: Mapping[str, str], source: str) -> Shard:
    if "WORLD_SIZE" in env or "RANK" in env:
        world, rank = _int(env, "WORLD_SIZE", 1), _int(env, "RANK", 0)
        local = _int(env, "LOCAL_RANK", 0)
    else:
        world = _int(env, "SLURM_STEP_NUM_TASKS", _int(env, "SLURM_NTASKS", 1))
        rank, local = _int(env, "SLURM_PROCID", 0), _int(env, "SLURM_LOCALID", 0)
    if world < 1 or not 0 <= rank < world:
        raise PathsslError(f"rank {rank} is outside a world of {world} in the environment; {_FIX}")
    return Shard(rank, world, local, source)


def resolve_shard(request: str | None, env: Mapping[str, str]) -> tuple[Shard, str | None]:
    """The shard for this run and, when the environment suggested sharding that was not
    asked for, the one line saying so. Read once, at the entry point."""
    if request is not None and request != "env":
        return parse_shard(request), None
    if request == "env":
        return _from_variables(env, "environment (--shard env)"), None
    if "TORCHELASTIC_RUN_ID" in env and _int(env, "WORLD_SIZE", 1) > 1:
        return _from_variables(env, "torchrun"), None
    if _int(env, "SLURM_STEP_NUM_TASKS", 1) > 1 and "SLURM_PROCID" in env:
        return _from_variables(
            {k: v for k, v in env.items() if k.startswith("SLURM")}, "srun"
        ), None
    hints = [
        f"{k}={env[k]}"
        for k in ("WORLD_SIZE", "SLURM_NTASKS")
        if env.get(k, "1").strip() not in ("", "1")
    ]
    note = None
    if hints:
        note = (
            f"{', '.join(hints)} in the environment, but this command was not launched as "
            "several tasks: embedding every slide here (pass --shard env to split the slides "
            "across the tasks)"
        )
    return Shard(), note
