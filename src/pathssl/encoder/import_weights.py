"""`pathssl import-weights`: a downloaded public checkpoint -> a pathssl model bundle.

Checkpoints are read with safetensors or torch.load(weights_only=True): tensors only, never
arbitrary pickled objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.encoder.bundle import EncoderConfig, build_module, load_weights
from pathssl.encoder.export import save_bundle
from pathssl.encoder.presets import Preset, get_preset
from pathssl.errors import ModelBundleError

_CONTAINER_KEYS = ("state_dict", "model", "teacher", "student", "module")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelBundleError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelBundleError(
            f"{path}: cannot read as a tensors-only checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); convert it to safetensors"
        ) from exc
    # Unwrap {"state_dict": {...}}-style containers (several levels deep at most).
    for _ in range(3):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelBundleError(f"{path}: checkpoint is not a dictionary of tensors")
    return obj


def map_keys(state: dict[str, torch.Tensor], preset: Preset) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (module., backbone., ...) and drop classification heads."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in preset.strip_prefixes:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        if key.startswith(preset.drop_prefixes):
            continue
        mapped[key] = value
    return mapped


def config_from_preset(preset: Preset, provenance: str) -> EncoderConfig:
    return EncoderConfig(
        name=preset.name,
        architecture=preset.architecture,
        embedding_dim=preset.embedding_dim,
        input_size_px=preset.input_size_px,
        target_mpp=preset.target_mpp,
        mean=preset.mean,
        std=preset.std,
        trained=True,
        provenance=provenance,
        timm_kwargs=dict(preset.timm_kwargs),
        pooling=preset.pooling,
    )


def import_weights(preset_name: str, checkpoint: Path, output_dir: Path) -> EncoderConfig:
    preset = get_preset(preset_name)
    config = config_from_preset(
        preset,
        f"imported by pathssl import-weights from {Path(checkpoint).name} "
        f"({preset.description}; {preset.source_url})",
    )
    module = build_module(config)
    target = module.backbone if preset.pooling == "cls+mean" else module
    state = map_keys(read_checkpoint(checkpoint), preset)
    load_weights(target, state, str(checkpoint), f"preset {preset.name} ({preset.architecture})")
    with torch.inference_mode():
        out = module.eval()(torch.zeros(1, 3, preset.input_size_px, preset.input_size_px))
    if out.shape[-1] != preset.embedding_dim:
        raise ModelBundleError(
            f"preset {preset.name}: model gives {out.shape[-1]} features, expected "
            f"{preset.embedding_dim}"
        )
    return save_bundle(module, config, output_dir)
