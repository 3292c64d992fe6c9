"""Measure a reduced precision against f32 for one bundle (`pathssl check-precision`): the
same OpenVINO engine in both, on every tile of the visible benchmark's tasks: each tile's
feature cosine to f32, and the linear probe's balanced accuracy (grouped cross-validation,
as the visible benchmark runs it) in each precision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pathssl
from pathssl.encoder.bundle import EncoderBundle, load_bundle, make_preprocess
from pathssl.encoder.openvino_engine import OpenVinoEncoder
from pathssl.encoder.precision_check import MAX_PROBE_CHANGE, MIN_COSINE, verdict
from pathssl.evaluation import grouped_cv as cv
from pathssl.evaluation import visible_benchmark as vb
from pathssl.evaluation.visible_tasks import Task


class _FromNormalised(torch.nn.Module):
    """The benchmark hands normalised tiles; the engine takes them on the 0-255 scale."""

    def __init__(self, engine: OpenVinoEncoder, bundle: EncoderBundle) -> None:
        super().__init__()
        self.engine = engine
        self.mean = torch.tensor(bundle.config.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(bundle.config.std).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine((x * self.std + self.mean) * 255.0)


def engine_encoder(bundle: EncoderBundle, precision: str) -> vb.Encoder:
    cfg = bundle.config
    module = bundle.module.eval()
    engine = OpenVinoEncoder(module, cfg.input_size_px, cfg.mean, cfg.std, precision)
    about = {"bundle": cfg.name, "engine": engine.description, "precision": precision}
    return vb.Encoder(
        precision,
        _FromNormalised(engine, bundle),
        make_preprocess(cfg),
        cfg.input_size_px,
        cfg.target_mpp,
        about,
    )


@torch.inference_mode()
def feature_agreement(tasks: list[Task], low: vb.Encoder, f32: vb.Encoder) -> dict[str, Any]:
    """Per-tile cosine and length change of the reduced precision's features against f32's."""
    cosines, norm_changes = [], []
    for task in tasks:
        px = vb.crop_px(f32, task)
        a, _ = cv.tile_features(low.module, low.preprocess, task.paths, px)
        b, _ = cv.tile_features(f32.module, f32.preprocess, task.paths, px)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cosines.append((a * b).sum(axis=1) / np.maximum(na * nb, 1e-12))
        norm_changes.append(np.abs(na - nb) / np.maximum(nb, 1e-12))
    cos, change = np.concatenate(cosines), np.concatenate(norm_changes)
    return {
        "tiles": len(cos),
        "min_cosine": float(cos.min()),
        "median_cosine": float(np.median(cos)),
        "max_length_change": float(change.max()),
    }


def check_precision(
    model_dir: Path, precision: str, tasks: list[Task], *, folds: int = 5, repeats: int = 3
) -> dict[str, Any]:
    """The record `--engine openvino-<precision>` is accepted or refused by."""
    bundle = load_bundle(model_dir)
    low, f32 = engine_encoder(bundle, precision), engine_encoder(bundle, "f32")
    features = feature_agreement(tasks, low, f32)
    probe = vb.run_visible_benchmark(tasks, [low, f32], folds=folds, repeats=repeats, n_boot=200)
    accuracy = {name: row["balanced_accuracy"] for name, row in probe["mean"]["encoders"].items()}
    change = accuracy[precision] - accuracy["f32"]
    accepted, why = verdict(features["min_cosine"], change)
    return {
        "weights_sha256": bundle.weights_sha256,
        "model": bundle.config.name,
        "precision": precision,
        "engine": low.about["engine"],
        "features": features,
        "probe": {
            "balanced_accuracy": accuracy,
            "change": change,
            "per_task": {
                task: {n: r["balanced_accuracy"] for n, r in row["encoders"].items()}
                for task, row in probe["tasks"].items()
            },
            "protocol": probe["protocol"],
            "folds": folds,
            "repeats": repeats,
        },
        "tolerance": {"min_cosine": MIN_COSINE, "max_probe_change": MAX_PROBE_CHANGE},
        "accepted": accepted,
        "why": why,
        "pathssl_version": pathssl.__version__,
        "measured": dt.date.today().isoformat(),
    }
