"""Writing model bundles (atomically) from a module and its config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from pathssl.atomic import staged_outputs
from pathssl.encoder.bundle import CONFIG_NAME, WEIGHTS_NAME, EncoderConfig, sha256_of


def save_bundle(module: torch.nn.Module, config: EncoderConfig, output_dir: Path) -> EncoderConfig:
    """Write encoder.safetensors and config.json (with the weights' sha256) into output_dir."""
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with staged_outputs(output_dir) as stage:
        weights_tmp = stage.path(WEIGHTS_NAME)
        save_file(state, str(weights_tmp))
        final = dataclasses.replace(config, weights_sha256=sha256_of(weights_tmp))
        stage.path(CONFIG_NAME).write_text(json.dumps(final.to_dict(), indent=2) + "\n")
    return final


def random_bundle(
    output_dir: Path,
    architecture: str,
    input_size_px: int = 224,
    target_mpp: float = 0.5,
    *,
    timm_kwargs: dict | None = None,
    seed: int = 0,
    name: str | None = None,
) -> EncoderConfig:
    """A bundle of a randomly initialised timm architecture (seeded, so reproducible).
    Its config says plainly that it is untrained."""
    from pathssl.encoder.bundle import build_module
    from pathssl.encoder.presets import IMAGENET_MEAN, IMAGENET_STD

    config = EncoderConfig(
        name=name or f"{architecture}-untrained",
        architecture=architecture,
        embedding_dim=0,
        input_size_px=input_size_px,
        target_mpp=target_mpp,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        trained=False,
        provenance=f"UNTRAINED: random initialisation of timm {architecture} (seed {seed}); "
        "its features carry no learned meaning",
        timm_kwargs=dict(timm_kwargs or {}),
    )
    torch.manual_seed(seed)
    module = build_module(config).eval()
    with torch.inference_mode():
        dim = module(torch.zeros(1, 3, input_size_px, input_size_px)).shape[-1]
    return save_bundle(module, dataclasses.replace(config, embedding_dim=int(dim)), output_dir)
