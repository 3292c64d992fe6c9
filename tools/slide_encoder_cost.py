"""What a slide costs with a pretrained slide encoder (docs/slide-encoders.md): FLOPs of the
CONCH v1.5 tile encoder's geometry (ViT-L/16 at 448 px) per tile, counted on the meta device;
FLOPs and CPU time of TITAN's and FEATHER's forward for N tiles on a square grid (random
weights). Usage: python tools/slide_encoder_cost.py [N ...]"""

from __future__ import annotations

import sys
import time

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from pathssl.aggregation.registry import get_slide_encoder


def tile_flops() -> float:
    with torch.device("meta"):
        vit = timm.create_model("vit_large_patch16_224", img_size=448, num_classes=0)
        with FlopCounterMode(display=False) as counter:
            vit(torch.zeros(1, 3, 448, 448))
    return counter.get_total_flops()


def slide_cost(name: str, n: int) -> tuple[float, float]:
    preset = get_slide_encoder(name)
    model = preset.build().eval().requires_grad_(False)
    side = int(n**0.5)
    rc = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1)
    coords = rc.reshape(-1, 2) * 1024
    features = torch.randn(len(coords), preset.tile_embedding_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        preset.encode(model, features, coords, 1024)
    with torch.inference_mode():
        start = time.perf_counter()
        preset.encode(model, features, coords, 1024)
        seconds = time.perf_counter() - start
    return counter.get_total_flops(), seconds


def main(sizes: list[int]) -> None:
    print(f"CONCH v1.5 geometry (ViT-L/16, 448 px): {tile_flops() / 1e9:.0f} GFLOP per tile")
    print(f"CPU: {torch.get_num_threads()} threads")
    for n in sizes:
        for name in ("titan", "feather"):
            flops, seconds = slide_cost(name, n)
            tiles = int(n**0.5) ** 2
            # FlopCounterMode leaves out the masked scaled_dot_product_attention: by formula,
            # QK^T and AV are 2 x 2 N^2 D per layer (TITAN: 6 layers, D 768, N tiles + 1)
            attention = 6 * 4 * (tiles + 1) ** 2 * 768 if name == "titan" else 0
            print(
                f"{name} {tiles} tiles: {flops / 1e9:.1f} GFLOP counted + {attention / 1e9:.1f} "
                f"GFLOP attention, {seconds:.2f} s CPU"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1024, 4096])
