"""Model bundles: a directory with config.json and encoder.safetensors.

The architecture is built by timm with pretrained=False and the weights come only from the
bundle's safetensors file, checked against the sha256 in config.json: never pickle, never
the network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pathssl.encoder.poolers import ATTENTION_POOLINGS, AttentionPooledEncoder
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
    "CTransPathConvStem": lambda: (
        __import__("pathssl.encoder.ctranspath_layers", fromlist=["ConvStem"]).ConvStem
    ),
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
    pooling: str = "timm"  # "timm": the model's own pooled output; "cls+mean": Virchow-style;
    # "attentional-pooler(-mha)": CONCH's (encoder/poolers.py)
    layer_norm_eps: float | None = None  # set on every LayerNorm when not timm's default
    weights_sha256: str = ""
    format_version: int = 1

    @classmethod
    def from_file(cls, path: Path) -> EncoderConfig:
        """Read and check config.json; any problem is one line naming the file and the key."""
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ModelBundleError(
                f"{path}: cannot be read ({exc.strerror or exc}); check the bundle's files "
                "and their permissions"
            ) from exc
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = (
                f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            raise ModelBundleError(f"{path}: not valid JSON ({where}); {CONFIG_FIX}") from exc
        problem = config_problem(raw)
        if problem:
            raise ModelBundleError(f"{path}: {problem}; {CONFIG_FIX}")
        raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIG_FIX = (
    "fix config.json or export the bundle again (`pathssl export`, `pathssl import-weights`)"
)
# Microns per pixel a model may be trained at: outside this, a value is a typo or a unit slip
# (e.g. nanometres), not a resolution a slide is embedded at.
PLAUSIBLE_TARGET_MPP = (0.05, 64.0)
MAX_INPUT_SIZE_PX = 4096
# What each key of config.json means, for the message when one is missing.
CONFIG_KEYS = {
    "name": "the model's name",
    "architecture": "the timm architecture, e.g. resnet18",
    "embedding_dim": "features per tile",
    "input_size_px": "tile side in pixels",
    "target_mpp": "microns per pixel the model expects",
    "mean": "per-channel mean on the 0-1 scale, 3 numbers",
    "std": "per-channel standard deviation on the 0-1 scale, 3 numbers",
    "trained": "true or false",
    "provenance": "where the weights come from",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_problem(raw: Any) -> str | None:
    """What is wrong with a config.json's content (one phrase naming the key), or None."""
    if not isinstance(raw, dict):
        return f"holds a JSON {type(raw).__name__}, not an object of model settings"
    known = {f.name: f for f in fields(EncoderConfig)}
    for key, f in known.items():
        if key not in raw and f.default is MISSING and f.default_factory is MISSING:
            return f"misses the key {key!r} ({CONFIG_KEYS.get(key, 'required')})"
    unknown = sorted(set(raw) - set(known))
    if unknown:
        return f"unknown key {unknown[0]!r} (a pathssl model config has {', '.join(known)})"
    for key in ("name", "architecture", "provenance", "pooling", "weights_sha256"):
        if key in raw and not isinstance(raw[key], str):
            return f"{key} is {raw[key]!r}, not a string"
    if not isinstance(raw["trained"], bool):
        return f"trained is {raw['trained']!r}, not true or false"
    for key in ("embedding_dim", "input_size_px"):
        if not _is_int(raw[key]) or raw[key] <= 0:
            return f"{key} is {raw[key]!r}; it must be a positive whole number ({CONFIG_KEYS[key]})"
    if raw["input_size_px"] > MAX_INPUT_SIZE_PX:
        return f"input_size_px is {raw['input_size_px']}, more than {MAX_INPUT_SIZE_PX} px a tile"
    mpp = raw["target_mpp"]
    lo, hi = PLAUSIBLE_TARGET_MPP
    if not _is_number(mpp) or not math.isfinite(mpp) or not lo <= mpp <= hi:
        return (
            f"target_mpp is {mpp!r}; it must be the microns per pixel the model was trained at, "
            f"between {lo} and {hi} (e.g. 0.5 for 20x, 1.0 for 10x)"
        )
    for key in ("mean", "std"):
        values = raw[key]
        if not isinstance(values, list | tuple) or len(values) != 3:
            return f"{key} is {values!r}; it must be 3 numbers, one per channel (R, G, B)"
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            return f"{key} is {values!r}; every value must be a finite number"
    if any(v <= 0 for v in raw["std"]):
        return f"std is {raw['std']!r}; every value must be above 0 (pixels are divided by it)"
    if any(not 0 <= v <= 1 for v in raw["mean"]) or any(v > 1 for v in raw["std"]):
        return (
            f"mean {raw['mean']!r} and std {raw['std']!r} are not on the 0-1 scale pathssl "
            "applies them on (pixels / 255); divide them by 255 (e.g. ImageNet's 0.485, 0.229)"
        )
    if not isinstance(raw.get("timm_kwargs", {}), dict):
        return f"timm_kwargs is {raw['timm_kwargs']!r}, not an object of keyword arguments"
    eps = raw.get("layer_norm_eps")
    if eps is not None and (not _is_number(eps) or not math.isfinite(eps) or eps <= 0):
        return f"layer_norm_eps is {eps!r}; it must be null or a positive number"
    version = raw.get("format_version", 1)
    if version != 1:
        return (
            f"format_version is {version!r}; this pathssl reads version 1 (a newer pathssl "
            "wrote it: upgrade pathssl)"
        )
    return None


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
    for key in ("mlp_layer", "act_layer", "embed_layer"):
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
    if config.pooling in ATTENTION_POOLINGS:  # CONCH's image towers
        return AttentionPooledEncoder(backbone, config.pooling, config.embedding_dim)
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
    check_finite(module, str(weights_path))
    module.eval()
    check_output(module, config, config_path)
    return EncoderBundle(path, config, module, sha)


def check_finite(module: torch.nn.Module, source: str) -> None:
    """Every weight and buffer (BatchNorm running statistics too) finite, or one line naming
    the first tensor that is not: NaN would give NaN features, or under OpenVINO (whose ReLU
    turns NaN into 0) finite nonsense."""
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
            continue
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        raise ModelBundleError(
            f"{source}: tensor {name!r} holds {nan} NaN and {inf} infinite values of "
            f"{tensor.numel()}; the weights are broken (e.g. a diverged training run): export "
            "the bundle again from a good checkpoint"
        )


def check_output(module: torch.nn.Module, config: EncoderConfig, config_path: Path) -> None:
    """The model takes input_size_px tiles and gives embedding_dim features per tile, checked
    on a copy without data (the meta device: no compute) or, where that fails, one blank tile."""
    size = config.input_size_px
    try:
        with torch.device("meta"):
            shape = tuple(build_module(config).eval()(torch.zeros(1, 3, size, size)).shape)
    except Exception:  # an op without a meta kernel: run the real module once
        try:
            with torch.inference_mode():
                shape = tuple(module(torch.zeros(1, 3, size, size)).shape)
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise ModelBundleError(
                f"{config_path}: {config.architecture} cannot take tiles of input_size_px "
                f"{size} ({type(exc).__name__}: {detail}); set input_size_px to the size the "
                "model was trained on"
            ) from exc
    if len(shape) != 2:
        raise ModelBundleError(
            f"{config_path}: {config.architecture} gives an output of shape {list(shape)} per "
            "batch, not one vector of features per tile; check pooling and timm_kwargs"
        )
    if shape[1] != config.embedding_dim:
        raise ModelBundleError(
            f"{config_path}: embedding_dim is {config.embedding_dim} but {config.architecture} "
            f"gives {shape[1]} features per tile; set embedding_dim to {shape[1]}"
        )


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
