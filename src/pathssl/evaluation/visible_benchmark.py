"""The visible benchmark (#23, `pathssl benchmark`): a candidate encoder, its randomly
initialised twin and an anchor (the ImageNet-supervised MobileNetV2 bundle) side by side in
one run, on every task of `visible_tasks` (grouped cross-validation, logistic probe on
standardised tile features, predictions pooled over folds and repeats; see grouped_cv).

Reported per task and for the mean over tasks: balanced accuracy with a 95 % group-bootstrap
interval per encoder, and the candidate's paired difference to each other encoder with its
interval; and whether the issue's bar is met (`done_when`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pathssl.evaluation import grouped_cv as cv
from pathssl.evaluation.visible_tasks import Task

TWIN = "random-twin"


@dataclass(frozen=True)
class Encoder:
    name: str
    module: torch.nn.Module
    preprocess: object
    input_px: int
    target_mpp: float
    about: dict = field(default_factory=dict)  # bundle name, path, sha256, trained


def bundle_encoder(name: str, path: Path) -> Encoder:
    from pathssl.encoder.bundle import load_bundle, make_preprocess

    b = load_bundle(path)
    about = {
        "bundle": b.config.name,
        "path": str(path),
        "architecture": b.config.architecture,
        "weights_sha256": b.weights_sha256,
        "trained": b.config.trained,
    }
    return Encoder(
        name,
        b.module,
        make_preprocess(b.config),
        b.config.input_size_px,
        b.config.target_mpp,
        about,
    )


def twin_encoder(path: Path, seed: int = 0) -> Encoder:
    """The candidate's architecture and preprocessing with random weights (seeded)."""
    from pathssl.encoder.bundle import EncoderConfig
    from pathssl.evaluation.tiles import random_twin

    config = EncoderConfig.from_file(Path(path) / "config.json")
    module, preprocess = random_twin(path, seed)
    about = {
        "bundle": f"{config.name} (random weights, seed {seed})",
        "path": str(path),
        "architecture": config.architecture,
        "trained": False,
    }
    return Encoder(TWIN, module, preprocess, config.input_size_px, config.target_mpp, about)


def usable_classes(task: Task) -> tuple[Task, list[str]]:
    """The task without classes of fewer than 2 groups (one cannot be both trained and
    tested on), and the names of those left out."""
    per_class = [len(np.unique(task.groups[task.labels == c])) for c in range(len(task.classes))]
    keep = [c for c, n in enumerate(per_class) if n >= 2]
    dropped = [task.classes[c] for c in range(len(task.classes)) if c not in keep]
    mask = np.isin(task.labels, keep)
    labels = np.searchsorted(keep, task.labels[mask])
    groups = np.unique(task.groups[mask], return_inverse=True)[1]  # numbered 0.. again
    return replace(
        task,
        paths=[p for p, m in zip(task.paths, mask, strict=True) if m],
        labels=labels,
        groups=groups,
        classes=[task.classes[c] for c in keep],
    ), dropped


def crop_px(encoder: Encoder, task: Task) -> int | None:
    """Source pixels of one tile at the encoder's field of view (None: resize whole)."""
    if task.image_mpp is None:
        return None
    return round(encoder.input_px * encoder.target_mpp / task.image_mpp)


def _group_labels(task: Task) -> np.ndarray:
    out = np.zeros(int(task.groups.max()) + 1, np.int64)
    out[task.groups] = task.labels
    return out


def evaluate_task(task: Task, encoders: list[Encoder], opts: dict) -> tuple[dict, dict]:
    """One task's row per encoder and its bootstrap replicates (by encoder name)."""
    task, dropped = usable_classes(task)
    group_labels = _group_labels(task)
    k = min(opts["folds"], len(group_labels))
    folds = [cv.grouped_folds(group_labels, k, seed) for seed in range(opts["repeats"])]
    draws = cv.bootstrap_draws(group_labels, opts["n_boot"], opts["seed"])
    row: dict = {
        "classes": task.classes,
        "dropped_classes": dropped,
        "n_images": len(task.paths),
        "n_groups": len(group_labels),
        "folds": k,
        "repeats": opts["repeats"],
        "image_mpp": task.image_mpp,
        "encoders": {},
    }
    replicates = {}
    for enc in encoders:
        px = crop_px(enc, task)
        x, owner = cv.tile_features(enc.module, enc.preprocess, task.paths, px)
        tile_groups = task.groups[owner]
        correct = np.mean(
            [cv.cross_validated_correct(x, task.labels[owner], f[tile_groups]) for f in folds],
            axis=0,
        )
        n = cv.group_sums(np.ones(len(owner)), tile_groups, len(group_labels))
        hits = cv.group_sums(correct, tile_groups, len(group_labels))
        replicates[enc.name] = cv.bootstrap_balanced_accuracy(n, hits, draws)
        row["encoders"][enc.name] = {
            "balanced_accuracy": cv.balanced_accuracy(n, hits, group_labels),
            "interval_95": cv.interval_95(replicates[enc.name]),
            "tiles": len(owner),
            "tile_source_px": px,
        }
    return row, replicates


def differences(points: dict, replicates: dict, candidate: str) -> dict:
    """The candidate minus each other encoder, with paired bootstrap intervals."""
    return {
        f"{candidate}-minus-{other}": {
            "difference": points[candidate] - points[other],
            "interval_95": cv.interval_95(replicates[candidate] - replicates[other]),
        }
        for other in points
        if other != candidate
    }


def run_visible_benchmark(
    tasks: list[Task],
    encoders: list[Encoder],
    *,
    folds: int = 5,
    repeats: int = 3,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Every task, every encoder (the first is the candidate), and the mean over tasks."""
    opts = {"folds": folds, "repeats": repeats, "n_boot": n_boot, "seed": seed}
    candidate = encoders[0].name
    results: dict = {
        "protocol": "grouped cross-validation, logistic probe on standardised "
        "tile features, predictions pooled over folds and repeats, balanced "
        "accuracy, 95 % intervals by group bootstrap within class",
        **opts,
        "candidate": candidate,
        "encoders": {e.name: e.about for e in encoders},
        "tasks": {},
    }
    all_reps: dict[str, list] = {e.name: [] for e in encoders}
    for task in tasks:
        row, reps = evaluate_task(task, encoders, opts)
        points = {name: r["balanced_accuracy"] for name, r in row["encoders"].items()}
        row["differences"] = differences(points, reps, candidate)
        results["tasks"][task.name] = row
        for name in all_reps:
            all_reps[name].append(reps[name])
    mean_reps = {name: np.mean(r, axis=0) for name, r in all_reps.items()}
    points = {
        e.name: float(
            np.mean([t["encoders"][e.name]["balanced_accuracy"] for t in results["tasks"].values()])
        )
        for e in encoders
    }
    results["mean"] = {
        "encoders": {
            name: {
                "balanced_accuracy": points[name],
                "interval_95": cv.interval_95(mean_reps[name]),
            }
            for name in points
        },
        "differences": differences(points, mean_reps, candidate),
    }
    return results


def done_when(results: dict, anchor: str) -> dict:
    """The issue's bar for shipping the candidate: +10 points over its random twin on the
    mean; over the anchor on the mean with disjoint intervals; on no task worse than the
    anchor beyond the interval of their paired difference."""
    cand = results["candidate"]
    mean = results["mean"]
    c, a = mean["encoders"][cand], mean["encoders"][anchor]
    worse = [
        name
        for name, t in results["tasks"].items()
        if t["differences"][f"{cand}-minus-{anchor}"]["interval_95"][1] < 0
    ]
    checks = {
        "beats_twin_by_10_points": mean["differences"][f"{cand}-minus-{TWIN}"]["difference"]
        >= 0.10,
        "beats_anchor_outside_intervals": c["interval_95"][0] > a["interval_95"][1],
        "tasks_worse_than_anchor": worse,
    }
    checks["met"] = bool(
        checks["beats_twin_by_10_points"] and checks["beats_anchor_outside_intervals"] and not worse
    )
    return checks


def format_benchmark(results: dict) -> str:
    names = list(results["encoders"])
    rows = {**results["tasks"], "mean over tasks": results["mean"]}
    lines = [f"{'task':<18}" + "".join(f"{n:>28}" for n in names)]
    for task, row in rows.items():
        cells = [
            f"{r['balanced_accuracy']:.3f} [{r['interval_95'][0]:.3f}, {r['interval_95'][1]:.3f}]"
            for r in (row["encoders"][n] for n in names)
        ]
        lines.append(f"{task:<18}" + "".join(f"{c:>28}" for c in cells))
    for key, d in results["mean"]["differences"].items():
        lines.append(
            f"mean {key}: {d['difference']:+.3f} "
            f"[{d['interval_95'][0]:+.3f}, {d['interval_95'][1]:+.3f}]"
        )
    return "\n".join(lines)
