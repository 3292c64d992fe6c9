"""What every peer runner shares, imported inside that peer's own venv: the arguments, the
tiling (the bundle's input_size_px at its target_mpp, as `pathssl embed` tiles), the same
ResNet-18 (timm's `resnet18` with a pathssl bundle's safetensors weights, global average
pooling, 512-d) and the one result line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file


def runner_arguments(description: str) -> argparse.Namespace:
    """--slide, --bundle (a pathssl resnet18 bundle), --out (a fresh folder), --batch-size."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--slide", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    return ap.parse_args()


def bundle_tiling(bundle: Path) -> tuple[int, float]:
    """(tile side in px, um/px) that pathssl embeds the bundle at: every peer tiles the same."""
    config = json.loads((bundle / "config.json").read_text())
    return int(config["input_size_px"]), float(config["target_mpp"])


def load_resnet18(bundle: Path) -> tuple[torch.nn.Module, list[float], list[float]]:
    """(module, mean, std) of a pathssl bundle whose architecture is timm's resnet18."""
    config = json.loads((bundle / "config.json").read_text())
    if config["architecture"] != "resnet18":
        raise SystemExit(f"{bundle}: the peer comparison runs a resnet18 bundle")
    module = timm.create_model("resnet18", pretrained=False, num_classes=0)
    module.load_state_dict(load_file(str(bundle / "encoder.safetensors")))
    return module.eval(), config["mean"], config["std"]


def report(tool: str, version: str, features) -> None:
    """The one line the orchestrator reads: tile count, width, and that features are finite."""
    import numpy as np

    features = np.asarray(features, dtype=np.float32)
    print(
        "PEER-RESULT "
        + json.dumps(
            {
                "tool": tool,
                "version": version,
                "tiles": int(features.shape[0]),
                "dim": int(features.shape[1]),
                "finite": bool(np.isfinite(features).all()),
            }
        ),
        flush=True,
    )
