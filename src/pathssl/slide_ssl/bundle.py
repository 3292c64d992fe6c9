"""The slide encoder inside a model bundle (slide_encoder.json + slide_encoder.safetensors),
and the aggregator `pathssl embed` uses when a bundle has one."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from pathssl.atomic import staged_outputs
from pathssl.encoder.bundle import sha256_of
from pathssl.errors import ModelBundleError
from pathssl.slide_ssl.model import SlideEncoder, SlideEncoderConfig

CONFIG_NAME = "slide_encoder.json"
WEIGHTS_NAME = "slide_encoder.safetensors"


def save_slide_encoder(encoder: SlideEncoder, bundle_dir: Path, meta: dict) -> dict:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with staged_outputs(Path(bundle_dir)) as stage:
        tmp = stage.path(WEIGHTS_NAME)
        save_file(state, str(tmp))
        record = {
            "architecture": encoder.config.to_dict(),
            **meta,
            "weights_sha256": sha256_of(tmp),
        }
        stage.path(CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def export_slide_encoder(checkpoint: Path, bundle_dir: Path) -> dict:
    from pathssl.training.checkpoint import load_checkpoint

    state = load_checkpoint(Path(checkpoint))
    cfg = state["config"]
    enc_cfg = SlideEncoderConfig(
        int(state["in_dim"]), cfg["width"], cfg["out_dim"], cfg["stages"], cfg["proj_dim"]
    )
    encoder = SlideEncoder(enc_cfg)
    encoder.load_state_dict(
        {k[len("encoder.") :]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    )
    meta = {
        "method": "giga-ssl (SimCLR NT-Xent on views of tile embeddings)",
        "steps": int(state["step"]),
        "tiles_per_view": cfg["tiles_per_view"],
        "inference_views": cfg["inference_views"],
        "temperature": cfg["temperature"],
        "trained_on": cfg["embeddings"],
        "seed": cfg["seed"],
    }
    return save_slide_encoder(encoder, bundle_dir, meta)


class TrainedSlideAggregator:
    """Slide embedding = L2-normalised mean of the encoder's embeddings over an ensemble of
    views (random tile subsets, seeded: the same input gives the same output)."""

    name = "giga-ssl"

    def __init__(self, encoder: SlideEncoder, tiles_per_view: int, views: int, sha256: str) -> None:
        self.encoder = encoder.eval()
        self.tiles_per_view, self.views, self.sha256 = tiles_per_view, views, sha256

    @torch.inference_mode()
    def __call__(self, features: h5py.Dataset | np.ndarray, grid_rc: np.ndarray) -> np.ndarray:
        """features may stay on disk: each view reads only its own tiles."""
        g = torch.Generator().manual_seed(0)
        n = features.shape[0]
        n_views = 1 if n <= self.tiles_per_view else self.views
        total = None
        for _ in range(n_views):
            idx = torch.randperm(n, generator=g)[: self.tiles_per_view].sort().values.numpy()
            x = torch.from_numpy(np.asarray(features[idx], np.float32))
            emb = self.encoder(x, torch.from_numpy(np.asarray(grid_rc)[idx]).long())
            total = emb if total is None else total + emb
        return torch.nn.functional.normalize(total / n_views, dim=0).numpy().astype(np.float32)


def load_slide_aggregator(bundle_dir: Path) -> TrainedSlideAggregator | None:
    from safetensors.torch import load_file

    config_path, weights_path = Path(bundle_dir) / CONFIG_NAME, Path(bundle_dir) / WEIGHTS_NAME
    if not config_path.exists():
        return None
    record = json.loads(config_path.read_text())
    sha = sha256_of(weights_path)
    if sha != record["weights_sha256"]:
        raise ModelBundleError(f"{weights_path}: sha256 does not match {CONFIG_NAME}")
    encoder = SlideEncoder(SlideEncoderConfig(**record["architecture"]))
    encoder.load_state_dict(load_file(str(weights_path)))
    return TrainedSlideAggregator(encoder, record["tiles_per_view"], record["inference_views"], sha)
