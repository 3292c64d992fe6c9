"""Model bundles: a directory with config.json and encoder.safetensors.

The architecture is built by timm with pretrained=False and the weights come only from the
bundle's safetensors file, checked against the sha256 in config.json: never pickle, never
the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pathssl.errors import ModelBundleError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "encoder.safetensors"
GRAND_CHALLENGE_MODEL_DIR = Path("/opt/ml/model")
BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[3] / "model"

# Layer classes a config may name (JSON cannot hold classes); an allowlist, not an import.
_NAMED_LAYERS: dict[str, Callable[[], Any]] = {
    "SwiGLUPacked": lambda: __import__("timm.layers", fromlist=["SwiGLUPacked"]).SwiGLUPacked,
    "SiLU": lambda: torch.nn.SiLU,
    "GELU": lambda: torch.nn.GELU,
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    architecture: str  # timm model name
    embedding_dim: int
    input_size_px: int
    target_mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trained: bool
    provenance: str
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    pooling: str = "timm"  # "timm": the model's own pooled output; "cls+mean": Virchow-style
    layer_norm_eps: float | None = None  # set on every LayerNorm when not timm's default
    weights_sha256: str = ""
    format_version: int = 1

    @classmethod
    def from_file(cls, path: Path) -> EncoderConfig:
        try:
            raw = json.loads(path.read_text())
            raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelBundleError(
                f"{path}: not a valid pathssl model config ({exc}); re-export the bundle"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenPooling(torch.nn.Module):
    """Class token concatenated with the mean of patch tokens (Virchow/Virchow2 output)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.forward_features(x)
        prefix = getattr(self.backbone, "num_prefix_tokens", 1)
        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=-1)


def build_module(config: EncoderConfig) -> torch.nn.Module:
    """The architecture with random weights (timm, pretrained=False: no download)."""
    import timm

    kwargs = dict(config.timm_kwargs)
    for key in ("mlp_layer", "act_layer"):
        if isinstance(kwargs.get(key), str):
            if kwargs[key] not in _NAMED_LAYERS:
                raise ModelBundleError(f"unknown layer {kwargs[key]!r} for {key} in model config")
            kwargs[key] = _NAMED_LAYERS[kwargs[key]]()
    kwargs.setdefault("num_classes", 0)
    try:
        backbone = timm.create_model(config.architecture, pretrained=False, **kwargs)
    except Exception as exc:
        raise ModelBundleError(
            f"timm cannot build {config.architecture!r} with {config.timm_kwargs} ({exc})"
        ) from exc
    if config.layer_norm_eps is not None:
        for layer in backbone.modules():
            if isinstance(layer, torch.nn.LayerNorm):
                layer.eps = config.layer_norm_eps
    if config.pooling == "cls+mean":
        return TokenPooling(backbone)
    if config.pooling != "timm":
        raise ModelBundleError(f"unknown pooling {config.pooling!r} in model config")
    return backbone


def load_weights(module: torch.nn.Module, state: dict, source: str, target: str) -> None:
    """Load every tensor of `state` into `module`, or say in one line what does not fit."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ModelBundleError(
            f"{source}: tensor shapes do not match {target}: {detail[:200]}"
        ) from exc
    if missing or unexpected:
        raise ModelBundleError(
            f"{source}: keys do not match {target}: {len(missing)} missing (e.g. "
            f"{sorted(missing)[:3]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]})"
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_dir(explicit: str | Path | None = None) -> Path:
    """--model > /opt/ml/model (Grand-Challenge's model tarball) > the bundled model/."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("PATHSSL_MODEL_DIR")
    if env:
        return Path(env)
    if _holds_files(GRAND_CHALLENGE_MODEL_DIR):
        check_model_tarball(GRAND_CHALLENGE_MODEL_DIR)
        return GRAND_CHALLENGE_MODEL_DIR
    return BUNDLED_MODEL_DIR


def _holds_files(folder: Path) -> bool:
    try:
        return any(not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False


def check_model_tarball(folder: Path) -> None:
    """An uploaded model that is present must be a bundle: never fall back silently."""
    if (folder / CONFIG_NAME).is_file():
        return
    nested = sorted(folder.glob(f"*/{CONFIG_NAME}"))
    hint = (
        f"; found {nested[0].relative_to(folder)}: pack the tarball from inside the bundle "
        "folder (tar -czf model.tar.gz -C model .)"
        if nested
        else "; upload a tarball of a bundle made by `pathssl export` or `import-weights`"
    )
    raise ModelBundleError(f"{folder}: holds files but no {CONFIG_NAME}, not a model bundle{hint}")


@dataclass
class EncoderBundle:
    """A loaded bundle: the module (eval mode, CPU) and its config."""

    path: Path
    config: EncoderConfig
    module: torch.nn.Module
    weights_sha256: str

    def describe(self) -> list[str]:
        """What a run should say about its model; the last line warns if it is untrained."""
        cfg = self.config
        lines = [
            f"model {cfg.name} ({cfg.architecture}, {cfg.embedding_dim}-d, {cfg.input_size_px} px "
            f"at {cfg.target_mpp} um/px) from {self.path}, sha256 {self.weights_sha256}"
        ]
        if not cfg.trained:
            lines.append(
                f"WARNING: model {cfg.name} is UNTRAINED (random weights): its features carry "
                "no learned meaning; give --model with a trained bundle"
            )
        return lines


def load_bundle(model_dir: str | Path | None = None) -> EncoderBundle:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_dir(model_dir)
    config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise ModelBundleError(
                f"{path}: model bundle has no {needed.name}; give --model DIR with config.json "
                "and encoder.safetensors (see `pathssl import-weights`)"
            )
    config = EncoderConfig.from_file(config_path)
    sha = sha256_of(weights_path)
    if config.weights_sha256 and sha != config.weights_sha256:
        raise ModelBundleError(
            f"{weights_path}: sha256 {sha[:12]}... does not match config.json "
            f"({config.weights_sha256[:12]}...); the weights were changed or corrupted"
        )
    module = build_module(config)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ModelBundleError(f"{weights_path}: not a readable safetensors file ({exc})") from exc
    load_weights(module, state, str(weights_path), f"{config.architecture} {config.timm_kwargs}")
    module.eval()
    return EncoderBundle(path, config, module, sha)


def normalise(batch_uint8: torch.Tensor, config: EncoderConfig) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, H, W) with the encoder's mean and std."""
    mean = torch.tensor(config.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float64).view(1, 3, 1, 1)
    scale = (1.0 / (255.0 * std)).float().to(batch_uint8.device)
    shift = (mean / std).float().to(batch_uint8.device)
    # two in-place passes over one float copy: a third of the time of (x / 255 - mean) / std
    return batch_uint8.to(torch.float32, copy=True).mul_(scale).sub_(shift)


def make_preprocess(config: EncoderConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image of any size -> normalised (3, H, W) float tensor, as in `pathssl embed`."""
    from pathssl.tiles.loading import resize_tile

    def preprocess(image: Image.Image) -> torch.Tensor:
        rgb = np.asarray(image.convert("RGB"))
        h, w = rgb.shape[:2]
        side = min(h, w)  # centre square: tiles are square, and resizing must not distort
        rgb = rgb[
            (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side
        ]
        rgb = resize_tile(np.ascontiguousarray(rgb), config.input_size_px)
        chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return normalise(chw[None], config)[0]

    return preprocess


def load_encoder(
    model_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Callable[[Image.Image], torch.Tensor]]:
    """The public API: `(module, preprocess)` for a model bundle (see resolve_model_dir)."""
    bundle = load_bundle(model_dir)
    return bundle.module, make_preprocess(bundle.config)
