"""Training images per second for each self-supervised method, on this machine's CPU (and
on CUDA when present), in one run.

    python bench/pretrain_throughput.py [--architecture resnet18] [--input-px 112]
        [--batch-size 32] [--steps 5] [--methods simclr dino ...] [--with-data MANIFEST]

Images are views: a SimCLR step on a batch of 32 counts 64, a DINO step (2 global +
n_local local crops) counts 32 x (2 + n_local). Without --with-data the views are random
tensors already in memory (the model's ceiling); with it they come from slides through
the real data pipeline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pathssl.pretrain.build import build_method
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def views_for(method, batch: int, device: torch.device) -> list[torch.Tensor]:
    return [torch.rand(batch, 3, s.size_px, s.size_px, device=device) for s in method.view_specs()]


def measure(method_name: str, args: argparse.Namespace, device: torch.device) -> float:
    cfg_path = ROOT / "configs" / "pretrain" / f"{method_name}.yaml"
    cfg = PretrainConfig.from_yaml(
        cfg_path, [f"architecture={args.architecture}", f"input_px={args.input_px}"]
    )
    method = build_method(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    if args.with_data:
        from pathssl.pretrain.data import PretrainDataset, TileSource, collate_views

        source = TileSource(args.with_data, [], cfg.target_mpps, cfg.input_px)
        ds = PretrainDataset(source, method.view_specs(), 0)

        def batches():
            i = 0
            while True:
                yield [
                    v.to(device) for v in collate_views([ds[i + j] for j in range(args.batch_size)])
                ]
                i += args.batch_size

        source_iter = batches()
    n_views = len(method.view_specs())
    fixed = views_for(method, args.batch_size, device)

    def step() -> None:
        views = next(source_iter) if args.with_data else fixed
        loss, _ = method(views, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if method.uses_momentum:
            method.momentum_update(0.99)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size * n_views / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--architecture", default="resnet18")
    p.add_argument("--input-px", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--methods", nargs="+", default=sorted(METHODS))
    p.add_argument("--with-data", type=Path, default=None, help="slide manifest CSV")
    args = p.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"{args.architecture}, {args.input_px} px, batch {args.batch_size}, "
        f"{torch.get_num_threads()} CPU threads, data: {args.with_data or 'in memory'}"
    )
    for device in devices:
        for name in args.methods:
            print(
                f"{device.type:>4} {name:<7} {measure(name, args, device):8.1f} images/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
