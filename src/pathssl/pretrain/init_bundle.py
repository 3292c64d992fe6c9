"""Continuing pretraining from a model bundle (`pathssl pretrain --init BUNDLE`).

A bundle (config.json + encoder.safetensors, from `pathssl export` or `pathssl
import-weights`) fixes what its weights were trained for: the backbone's architecture
(`architecture`, `timm_kwargs`, `pooling`, `layer_norm_eps`) and its preprocessing
(`input_px`, `mean`, `std`, and the embedding resolution `target_mpps[0]`). A config that
leaves such a key unset takes the bundle's value (said in one log line); one that sets it to
another value is a one-line error naming both (`--set KEY=null` unsets a key a recipe sets).
`timm_kwargs` may add keys the bundle does not set (e.g. `drop_path_rate`), not change those
it does; `target_mpps` may add coarser or finer fields of view after the bundle's own.

The backbone of the student and of every teacher/momentum copy starts from the bundle's
weights (`load_parent_weights`, on a fresh start only: a resumed run takes its checkpoint's);
heads start fresh. The run records the bundle as `parent` (name, weights sha256, path) in its
config.yaml and checkpoints, and `pathssl export` names it in the new bundle's provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from pathssl.encoder.bundle import CONFIG_NAME, WEIGHTS_NAME, EncoderConfig, sha256_of
from pathssl.errors import ModelBundleError, PathsslError
from pathssl.pretrain.config import BUNDLE_KEYS, PretrainConfig

log = logging.getLogger("pathssl")

# sha256 of weights files already hashed by this process: (path, size, mtime) -> digest
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _weights_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]


def read_parent(init: str | Path) -> tuple[EncoderConfig, str, Path]:
    """The bundle's config, the sha256 of its weights and its absolute path; a folder that is
    not a bundle, or weights that do not match config.json, are one-line errors."""
    path = Path(init)
    needed = [path / CONFIG_NAME, path / WEIGHTS_NAME]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise ModelBundleError(
            f"--init {path}: not a model bundle (no {' or '.join(missing)}); give a folder "
            "made by `pathssl export` or `pathssl import-weights`"
        )
    config = EncoderConfig.from_file(needed[0])
    sha = _weights_sha256(needed[1])
    if config.weights_sha256 and sha != config.weights_sha256:
        raise ModelBundleError(
            f"--init {path}: {WEIGHTS_NAME} has sha256 {sha[:12]}..., config.json says "
            f"{config.weights_sha256[:12]}...; the weights were changed or corrupted"
        )
    return config, sha, path.resolve()


def bundle_values(bundle: EncoderConfig) -> dict[str, Any]:
    """The bundle's values of BUNDLE_KEYS, as a pretraining config holds them."""
    return {
        "architecture": bundle.architecture,
        "timm_kwargs": dict(bundle.timm_kwargs),
        "pooling": bundle.pooling,
        "layer_norm_eps": bundle.layer_norm_eps,
        "input_px": int(bundle.input_size_px),
        "mean": [float(v) for v in bundle.mean],
        "std": [float(v) for v in bundle.std],
        "target_mpps": [float(bundle.target_mpp)],
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _agree(key: str, value: Any, theirs: Any) -> tuple[Any, list[str]]:
    """(the value to train with, contradictions) for a key the config sets."""
    if key == "timm_kwargs":  # may add keyword arguments, not change the bundle's
        clashes = [
            f"timm_kwargs.{k} {value[k]} (config) vs {theirs[k]} (bundle)"
            for k in sorted(set(value) & set(theirs))
            if not _same(value[k], theirs[k])
        ]
        return {**theirs, **value}, clashes
    if key == "target_mpps":  # the first is the embedding resolution; others may follow
        if value and _same(value[0], theirs[0]):
            return list(value), []
        first = value[0] if value else None
        return value, [f"target_mpps[0] {first} (config) vs target_mpp {theirs[0]} (bundle)"]
    if _same(value, theirs):
        return value, []
    return value, [f"{key} {value} (config) vs {theirs} (bundle)"]


def resolve_init(cfg: PretrainConfig, given: set[str] | None = None) -> PretrainConfig:
    """`cfg` with the keys the bundle `cfg.init` owns taken from it, and `parent` recorded.
    `given`: the keys the config file and overrides set; None (a config built in code): the
    keys whose value is not the default. Idempotent."""
    if not cfg.init:
        return cfg
    bundle, sha, path = read_parent(cfg.init)
    defaults = PretrainConfig()
    theirs = bundle_values(bundle)
    values: dict[str, Any] = {}
    clashes: list[str] = []
    taken: list[str] = []
    for key in BUNDLE_KEYS:
        mine = getattr(cfg, key)
        stated = key in given if given is not None else not _same(mine, getattr(defaults, key))
        if stated:
            values[key], wrong = _agree(key, mine, theirs[key])
            clashes += wrong
        else:
            values[key] = theirs[key]
            taken.append(f"{key} {theirs[key]}")
    if clashes:
        raise PathsslError(
            f"--init {cfg.init}: the config contradicts bundle {bundle.name!r}: "
            f"{'; '.join(clashes)}; leave these keys unset or --set them to null (the "
            "bundle's values are then used), or continue from a bundle that has them"
        )
    parent = {"name": bundle.name, "weights_sha256": sha, "path": str(path)}
    if cfg.parent != parent:  # said once, not again when a resolved config is resolved
        log.info(
            "--init: continuing from bundle %s (weights sha256 %s); from the bundle: %s",
            bundle.name,
            sha,
            ", ".join(taken) or "nothing (the config states every key it owns)",
        )
    return dataclasses.replace(cfg, **values, parent=parent)


def check_init_options(cfg: PretrainConfig) -> None:
    """The knobs of a run started from a bundle: one-line errors for values that cannot be."""
    if not (math.isfinite(cfg.init_lr_scale) and cfg.init_lr_scale >= 0):
        raise PathsslError(
            f"init_lr_scale={cfg.init_lr_scale}: set it to a number of 0 or more (a factor on "
            "the backbone's learning rate)"
        )
    if cfg.init_lr_scale != 1.0 and not cfg.init:
        raise PathsslError(
            f"init_lr_scale={cfg.init_lr_scale} scales the backbone's learning rate of a run "
            "started from a bundle: give --init BUNDLE, or leave init_lr_scale at 1.0"
        )
    if cfg.freeze_backbone_steps < 0:
        raise PathsslError(
            f"freeze_backbone_steps={cfg.freeze_backbone_steps}: set it to 0 or more steps"
        )
    if cfg.parent and not cfg.init:
        raise PathsslError(
            "parent is recorded from --init BUNDLE, not set: remove it from the config"
        )


def load_parent_weights(method: Any, cfg: PretrainConfig) -> None:
    """The bundle's weights into the method's backbone and each teacher/momentum copy of it
    (`SSLMethod.backbones`), checked to be the weights the run's config recorded."""
    from pathssl.encoder.bundle import load_bundle, load_weights

    bundle = load_bundle(cfg.init)
    expected = cfg.parent.get("weights_sha256")
    if expected and bundle.weights_sha256 != expected:
        raise PathsslError(
            f"--init {cfg.init}: the bundle's weights changed since the run's config recorded "
            f"them (sha256 {bundle.weights_sha256[:12]}..., recorded {expected[:12]}...); "
            "start the run again"
        )
    state = bundle.module.state_dict()
    target = f"the {cfg.architecture} backbone of the run ({cfg.timm_kwargs})"
    for backbone in method.backbones():
        load_weights(backbone, state, str(Path(cfg.init) / WEIGHTS_NAME), target)
