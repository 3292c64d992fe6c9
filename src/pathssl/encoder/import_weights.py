"""`pathssl import-weights`: a downloaded public checkpoint -> a pathssl model bundle.

Checkpoints are read with safetensors or torch.load(weights_only=True): tensors only, never
arbitrary pickled objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pathssl.encoder.bundle import EncoderConfig, build_module, load_weights
from pathssl.encoder.conch_layout import fit_conch_v1_5
from pathssl.encoder.ctranspath_layers import old_swin_to_timm
from pathssl.encoder.export import save_bundle
from pathssl.encoder.hf_layout import fit_position_embeddings, transformers_to_timm
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


def published_to_timm(
    state: dict[str, torch.Tensor], preset: Preset, target: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The published checkpoint's tensors under the timm module's names and shapes."""
    state = map_keys(state, preset)
    if preset.layout == "transformers":
        state = fit_position_embeddings(transformers_to_timm(state), target)
    elif preset.layout == "conch-v1.5":
        state = fit_conch_v1_5(state, target)
    elif preset.layout == "swin-timm-0.5":  # CTransPath as CHIEF saved it
        state = old_swin_to_timm(state, target)
    elif preset.layout != "timm":
        raise ModelBundleError(f"preset {preset.name}: unknown checkpoint layout {preset.layout!r}")
    return state


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
        layer_norm_eps=preset.layer_norm_eps,
    )


def import_weights(preset: str | Preset, checkpoint: Path, output_dir: Path) -> EncoderConfig:
    """A bundle in output_dir from a published checkpoint of the preset (a name or a Preset)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    config = config_from_preset(
        preset,
        f"imported by pathssl import-weights from {Path(checkpoint).name} "
        f"({preset.description}; {preset.source_url})",
    )
    module = build_module(config)
    target = module.backbone if preset.pooling == "cls+mean" else module
    state = published_to_timm(read_checkpoint(checkpoint), preset, target)
    load_weights(target, state, str(checkpoint), f"preset {preset.name} ({preset.architecture})")
    with torch.inference_mode():
        out = module.eval()(torch.zeros(1, 3, preset.input_size_px, preset.input_size_px))
    if out.shape[-1] != preset.embedding_dim:
        raise ModelBundleError(
            f"preset {preset.name}: model gives {out.shape[-1]} features, expected "
            f"{preset.embedding_dim}"
        )
    return save_bundle(module, config, output_dir)
