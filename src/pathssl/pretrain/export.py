"""`pathssl export`: a training checkpoint -> a model bundle that `pathssl embed` and the
container load unchanged (the teacher network for DINO and BYOL)."""

from __future__ import annotations

from pathlib import Path

from pathssl.encoder.bundle import EncoderConfig
from pathssl.encoder.export import save_bundle
from pathssl.pretrain.build import build_method
from pathssl.pretrain.config import PretrainConfig
from pathssl.training.checkpoint import load_checkpoint


def export_checkpoint(checkpoint: Path, output_dir: Path, name: str | None = None) -> EncoderConfig:
    state = load_checkpoint(Path(checkpoint))
    cfg = PretrainConfig(**state["config"])
    method = build_method(cfg)
    method.load_state_dict(state["model"])
    encoder = method.export_backbone().eval()
    data = [cfg.manifest] if cfg.manifest else []
    network = "teacher" if cfg.method in ("dino", "byol") else "online"
    config = EncoderConfig(
        name=name or f"{cfg.architecture}-{cfg.method}-{state['step']}steps",
        architecture=cfg.architecture,
        embedding_dim=int(method.embed_dim),
        input_size_px=cfg.input_px,
        target_mpp=float(cfg.target_mpps[0]),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        trained=True,
        provenance=(
            f"pathssl pretrain: {cfg.method} ({network} network), {state['step']} steps of "
            f"batch {cfg.batch_size}, {cfg.input_px} px at {cfg.target_mpps} um/px, "
            f"data: {data + cfg.image_dirs}, seed {cfg.seed}"
        ),
        timm_kwargs=dict(cfg.timm_kwargs),
    )
    saved = save_bundle(encoder, config, output_dir)
    copy_run_records(Path(checkpoint).parent.parent, Path(output_dir))
    return saved


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
