"""`pathssl export`: a training checkpoint -> a model bundle that `pathssl embed` and the
container load unchanged: by default the teacher network for DINO and BYOL, the online
network otherwise; `network="momentum"` takes MoCo's key encoder (an EMA of the online
network, steadier between steps). A run started from a
bundle (`--init`) names it in the new bundle's provenance ("continued from bundle 'NAME'
(weights sha256 HEX)", read back by `parent_sha256`) and in training-config.yaml (`parent`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pathssl.encoder.bundle import EncoderConfig
from pathssl.encoder.export import save_bundle
from pathssl.pretrain.build import build_method, encoder_config
from pathssl.pretrain.config import PretrainConfig
from pathssl.training.checkpoint import load_checkpoint


def export_checkpoint(
    checkpoint: Path, output_dir: Path, name: str | None = None, network: str | None = None
) -> EncoderConfig:
    """`network`: "online" or "momentum" (the EMA teacher or key encoder); None: the
    method's default (`SSLMethod.default_network`)."""
    state = load_checkpoint(Path(checkpoint))
    cfg = PretrainConfig(**state["config"])
    method = build_method(cfg)
    method.load_state_dict(state["model"])
    network = network or method.default_network
    encoder = method.export_backbone(network).eval()
    data = [cfg.manifest] if cfg.manifest else []
    label = method.momentum_network_name if network == "momentum" else network
    chosen = "" if network == method.default_network else f"-{network}"
    steps = state["step"]
    parent = cfg.parent or {}
    default_name = f"{parent['name']}-" if parent.get("name") else f"{cfg.architecture}-"
    provenance = (
        f"pathssl pretrain: {cfg.method} ({label} network), {steps} steps of "
        f"batch {cfg.batch_size}, {cfg.input_px} px at {cfg.target_mpps} um/px, "
        f"data: {data + cfg.image_dirs}, seed {cfg.seed}"
    )
    if parent:
        provenance += f"; {parent_text(parent, cfg)}"
    config = encoder_config(
        cfg,
        int(method.embed_dim),
        name=name or f"{default_name}{cfg.method}{chosen}-{steps}steps",
        trained=True,
        provenance=provenance,
    )
    saved = save_bundle(encoder, config, output_dir)
    copy_run_records(Path(checkpoint).parent.parent, Path(output_dir))
    return saved


PARENT_PATTERN = re.compile(
    r"continued from bundle '(?P<name>[^']*)' \(weights sha256 (?P<sha>[0-9a-f]{64})\)"
)


def parent_text(parent: dict[str, Any], cfg: PretrainConfig) -> str:
    """The provenance clause naming the bundle a run continued from (`PARENT_PATTERN`)."""
    knobs = []
    if cfg.init_lr_scale != 1.0:
        knobs.append(f"backbone learning rate x{cfg.init_lr_scale}")
    if cfg.freeze_backbone_steps:
        knobs.append(f"backbone frozen for {cfg.freeze_backbone_steps} steps")
    name = str(parent.get("name", "")).replace("'", "")
    return f"continued from bundle '{name}' (weights sha256 {parent['weights_sha256']})" + (
        f", {', '.join(knobs)}" if knobs else ""
    )


def parent_sha256(config: EncoderConfig) -> str | None:
    """The weights sha256 of the bundle a bundle was continued from (`pathssl pretrain
    --init`), as its provenance names it; None for a bundle trained from scratch."""
    match = PARENT_PATTERN.search(config.provenance)
    return match["sha"] if match else None


# What a training run records, copied into the bundle beside the weights (model card data).
RUN_RECORDS = {
    "config.yaml": "training-config.yaml",
    "log.csv": "training-log.csv",
    "data-sources.txt": "training-data.txt",
}


def copy_run_records(run_dir: Path, bundle_dir: Path) -> list[str]:
    """Copy the run's config, loss log and data summary into the bundle, where present."""
    import shutil

    copied = []
    for name, target in RUN_RECORDS.items():
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, bundle_dir / target)
            copied.append(target)
    return copied
