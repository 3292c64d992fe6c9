"""Where a pretraining step's time goes on CPU: decode (reading and resizing source tiles),
augmentation (making the views), forward, backward and the optimizer step, per step, for
one recipe, in this process (no loader workers: each stage timed alone).

    OMP_NUM_THREADS=1 python tools/pretrain_time_breakdown.py \
        --config configs/pretrain/imagenet-mobilenetv2-moco.yaml \
        --init /work/runs/imagenet-mobilenetv2-112 --steps 4 [--no-channels-last] [--bf16]

Times are CPU seconds of the process (what each stage costs, however busy the machine;
`--wall` for wall-clock). Steps per hour: 3600 / (the stages' sum) with data made in the
training process and a core of its own; with loader workers on other cores the data stages
overlap the model's (steps/hour up to 3600 / the model stages).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from pathssl.pretrain.build import build_method, make_optimizer
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.data import TileSource, sample_generator
from pathssl.pretrain.init_bundle import load_parent_weights, resolve_init
from pathssl.tiles.augment import make_view

STAGES = ("decode", "augment", "forward", "backward", "optimizer")


def clock(cpu: bool) -> float:
    """CPU seconds of this process (a stage's cost whatever else the machine runs), or wall."""
    return time.process_time() if cpu else time.perf_counter()


def make_batch(source, views, seed: int, start: int, batch: int, times: dict, cpu: bool) -> list:
    tiles, gens = [], []
    t0 = clock(cpu)
    for i in range(start, start + batch):
        g = sample_generator(seed, i)
        tiles.append(source.sample(g))
        gens.append(g)
    t1 = clock(cpu)
    out = [
        torch.stack([make_view(t, v, g) for t, g in zip(tiles, gens, strict=True)]) for v in views
    ]
    times["decode"] += t1 - t0
    times["augment"] += clock(cpu) - t1
    return out


def run(cfg: PretrainConfig, steps: int, bf16: bool, cpu: bool) -> dict[str, float]:
    method = build_method(cfg)
    if cfg.init:
        load_parent_weights(method, cfg)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    method = method.to(memory_format=fmt).train()
    opt = make_optimizer(cfg, method)
    source = TileSource(
        Path(cfg.manifest) if cfg.manifest else None,
        [Path(d) for d in cfg.image_dirs],
        cfg.target_mpps,
        cfg.input_px,
    )
    views = [dataclasses.replace(v, **cfg.augment) for v in method.view_specs()]
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    times = dict.fromkeys(STAGES, 0.0)
    for step in range(steps + 1):  # the first step warms up and is not counted
        if step == 1:
            times = dict.fromkeys(STAGES, 0.0)
        batch = make_batch(
            source, views, cfg.seed, step * cfg.batch_size, cfg.batch_size, times, cpu
        )
        batch = [((v - mean) / std).contiguous(memory_format=fmt) for v in batch]
        t0 = clock(cpu)
        with cast():
            loss, _ = method(batch, 0.5)
        t1 = clock(cpu)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        t2 = clock(cpu)
        opt.step()
        if method.uses_momentum:
            method.momentum_update(0.99)
        t3 = clock(cpu)
        times["forward"] += t1 - t0
        times["backward"] += t2 - t1
        times["optimizer"] += t3 - t2
    return {k: v / steps for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--init", type=Path, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU")
    p.add_argument("--wall", action="store_true", help="wall-clock time, not CPU time")
    args = p.parse_args()
    overrides = [*args.overrides, f"channels_last={not args.no_channels_last}"]
    cfg = resolve_init(PretrainConfig.from_yaml(args.config, overrides, init=args.init))
    torch.manual_seed(0)
    per_step = run(cfg, args.steps, args.bf16, not args.wall)
    total = sum(per_step.values())
    model = per_step["forward"] + per_step["backward"] + per_step["optimizer"]
    print(
        f"{cfg.method} {cfg.architecture} {cfg.input_px} px batch {cfg.batch_size}, "
        f"{torch.get_num_threads()} thread(s), channels_last {cfg.channels_last}, "
        f"bf16 {args.bf16}, "
        f"{'wall-clock' if args.wall else 'CPU'} seconds"
    )
    print("  " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in per_step.items()))
    print(
        f"  step {total:.2f} s: {3600 / total:.0f} steps/hour in one process; "
        f"{3600 / model:.0f} steps/hour if loader workers hide the data stages"
    )


if __name__ == "__main__":
    main()
