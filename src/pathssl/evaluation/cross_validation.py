"""Cross-validated probes for small labelled sets (`pathssl evaluate --folds K`).

With a few dozen labelled images, one train/test split decides on a handful of test images
(CRC-32 tests 8 tiles, MoNuSeg 13 regions). Here every image is tested once per repeat:
stratified K folds (leave-one-out when K is at least the number of images), each probe
trained on all the labels of the other folds, as the external evaluation's logistic probe
is. Reported per encoder: balanced accuracy of the pooled predictions, mean and spread over
repeats; and for each pair of encoders (the random twin included), the difference with a
paired bootstrap interval over images (resampled within each class, so that balanced
accuracy keeps its class weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathssl.errors import PathsslError
from pathssl.evaluation.tiles import (
    LabelledImages,
    bundle_encoders,
    dataset_mpp,
    extract_features,
    knn_predictions,
    linear_probe_predictions,
    read_classes,
)

PROBES = {"linear": linear_probe_predictions, "knn": knn_predictions}


def all_images(root: Path) -> LabelledImages:
    """Every labelled image of a dataset folder, its train/ and test/ splits pooled."""
    root = Path(root)
    if not root.is_dir():
        raise PathsslError(f"{root}: no such dataset folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = read_classes(root / "train")
        test = read_classes(root / "test", train.classes)
        data = LabelledImages(
            train.paths + test.paths, np.concatenate([train.labels, test.labels]), train.classes
        )
    else:
        data = read_classes(root)
    counts = np.bincount(data.labels, minlength=len(data.classes))
    if len(data.classes) < 2 or counts.min() < 2:
        raise PathsslError(f"{root}: cross-validation needs two class folders of 2+ images")
    return data


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per image: each class shuffled and dealt round the folds in turn, carrying
    on where the previous class stopped, so fold sizes differ by at most one."""
    k = min(k, len(labels))
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), np.int64)
    dealt = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        folds[idx] = (dealt + np.arange(len(idx))) % k
        dealt += len(idx)
    return folds


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-image weights such that balanced accuracy = sum(weight * correct)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[inverse])


def cross_validated_correct(
    features: np.ndarray, labels: np.ndarray, k: int, seeds: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per probe: (repeats, images) array, 1 where the held-out image was predicted right."""
    correct = {name: np.zeros((len(seeds), len(labels))) for name in PROBES}
    for r, seed in enumerate(seeds):
        folds = stratified_folds(labels, k, seed)
        for fold in np.unique(folds):
            test = folds == fold
            for name, predict in PROBES.items():
                pred = predict(features[~test], labels[~test], features[test])
                correct[name][r, test] = pred == labels[test]
    return correct


def paired_bootstrap(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of balanced accuracy(a) - balanced accuracy(b), from per-image correct
    rates a and b, images resampled with replacement within each class."""
    rng = np.random.default_rng(seed)
    weights = class_weights(labels)
    diff = weights * (a - b)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    draws = np.zeros(n_boot)
    for idx in groups:
        draws += diff[idx][rng.integers(0, len(idx), (n_boot, len(idx)))].sum(axis=1)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def cross_validate_bundle(
    dataset: Path,
    model_dir: Path,
    folds: int,
    *,
    seeds: Sequence[int] = (0,),
    image_mpp: float | None = None,
    compare: dict[str, Path] | None = None,
    resize_whole: bool = False,
    compare_random: bool = True,
) -> dict:
    """Cross-validated linear probe and kNN for the bundle, the bundles in `compare` and the
    random twin, each at its own resolution (see evaluate_bundle)."""
    if folds < 2:
        raise PathsslError(f"--folds {folds}: cross-validation needs at least 2 folds")
    data = all_images(dataset)
    if folds >= len(data.paths):
        seeds = seeds[:1]  # leave-one-out is the same for every seed: one repeat
    mpp = None if resize_whole else image_mpp or dataset_mpp(dataset)
    weights = class_weights(data.labels)
    rates: dict[str, dict[str, np.ndarray]] = {}
    results: dict = {
        "protocol": "cross-validation",
        "classes": data.classes,
        "n_images": len(data.paths),
        "folds": min(folds, len(data.paths)),
        "seeds": list(seeds),
        "tiled_at_px": None,
        "encoders": {},
    }
    for name, module, preprocess, crop_px in bundle_encoders(
        model_dir, compare, compare_random, mpp, seeds[0]
    ):
        results["tiled_at_px"] = results["tiled_at_px"] or crop_px
        x = extract_features(module, preprocess, data.paths, crop_px=crop_px)
        correct = cross_validated_correct(x, data.labels, folds, seeds)
        rates[name] = {probe: c.mean(axis=0) for probe, c in correct.items()}
        row = results["encoders"][name] = {}
        for probe, c in correct.items():
            per_repeat = c @ weights  # balanced accuracy of each repeat
            row[f"{probe}_balanced_accuracy"] = float(per_repeat.mean())
            row[f"{probe}_std"] = float(per_repeat.std())
    for name in rates:  # paired differences: to the random twin, and between bundles
        for other in rates.keys() - {name}:
            results["encoders"][name][f"minus_{other}"] = {
                probe: {
                    "difference": float(weights @ (rates[name][probe] - rates[other][probe])),
                    "interval_95": paired_bootstrap(
                        data.labels, rates[name][probe], rates[other][probe]
                    ),
                }
                for probe in PROBES
            }
    return results


def format_cross_validation(name: str, results: dict) -> str:
    folds = results["folds"]
    lines = [
        f"{name}: {results['n_images']} images, classes {results['classes']}, "
        + ("leave-one-out" if folds == results["n_images"] else f"{folds}-fold")
        + f" cross-validation, repeats {results['seeds']}"
        + (f", images tiled at {results['tiled_at_px']} px" if results["tiled_at_px"] else ""),
        f"  {'encoder':<10} {'linear':>14} {'kNN':>14}   minus random: linear, kNN (95 %)",
    ]
    for enc, r in results["encoders"].items():
        line = (
            f"  {enc:<10} {r['linear_balanced_accuracy']:8.3f} ±{r['linear_std']:.3f} "
            f"{r['knn_balanced_accuracy']:8.3f} ±{r['knn_std']:.3f}"
        )
        if "minus_random" in r:
            line += "   " + ", ".join(
                f"{d['difference']:+.3f} [{d['interval_95'][0]:+.3f}, {d['interval_95'][1]:+.3f}]"
                for d in r["minus_random"].values()
            )
        lines.append(line)
    return "\n".join(lines)
