"""`pathssl evaluate`: frozen-encoder linear probe and kNN on an image-folder dataset.

Layout: DATASET/<class>/*.png, or DATASET/train/<class>/* and DATASET/test/<class>/*
(as MHIST, CRC-100K, BACH or PCam can be laid out). Without train/test folders a seeded,
stratified 70/30 split is used. Reported: balanced accuracy (as eva reports), for 1%, 10%
and 100% of the training labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pathssl.errors import PathsslError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class LabelledImages:
    paths: list[Path]
    labels: np.ndarray
    classes: list[str]


def _read_classes(root: Path, classes: list[str] | None = None) -> LabelledImages:
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    classes = classes or found
    paths, labels = [], []
    for i, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(i)
    return LabelledImages(paths, np.asarray(labels, np.int64), classes)


def load_split(root: Path, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    root = Path(root)
    if not root.is_dir():
        raise PathsslError(f"{root}: no such dataset folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _read_classes(root / "train")
        return train, _read_classes(root / "test", train.classes)
    data = _read_classes(root)
    if len(data.classes) < 2 or len(data.paths) < 4:
        raise PathsslError(f"{root}: needs at least two class folders of images")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(data.paths), bool)
    for c in range(len(data.classes)):
        idx = rng.permutation(np.flatnonzero(data.labels == c))
        test_mask[idx[: max(1, round(0.3 * len(idx)))]] = True
    pick = lambda m: LabelledImages(  # noqa: E731
        [p for p, k in zip(data.paths, m, strict=True) if k], data.labels[m], data.classes
    )
    return pick(~test_mask), pick(test_mask)


@torch.inference_mode()
def extract_features(
    module: torch.nn.Module, preprocess, paths: list[Path], batch_size: int = 64
) -> np.ndarray:
    module.eval()
    out = []
    for start in range(0, len(paths), batch_size):
        batch = []
        for p in paths[start : start + batch_size]:
            with Image.open(p) as im:
                batch.append(preprocess(im.convert("RGB")))
        out.append(module(torch.stack(batch)).float().numpy())
    feats = np.concatenate(out)
    if not np.isfinite(feats).all():
        raise PathsslError("encoder produced non-finite features")
    return feats


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of `fraction` of each class (at least one per class), seeded."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keep.append(idx[: max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(keep))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def linear_probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(train_x, train_y)
    return balanced_accuracy(test_y, clf.predict(test_x))


def knn(train_x, train_y, test_x, test_y, k: int = 20) -> float:
    """Cosine kNN with similarity-weighted votes. k is capped at the smallest class count, so
    that with few labels the vote is not decided by class sizes alone."""
    k = max(1, min(k, int(np.unique(train_y, return_counts=True)[1].min())))
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True).clip(1e-12)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True).clip(1e-12)
    sim = b @ a.T
    k = min(k, len(train_y))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    votes = np.zeros((len(test_x), n_classes))
    for j in range(k):
        np.add.at(
            votes, (np.arange(len(test_x)), train_y[top[:, j]]), sim[np.arange(len(b)), top[:, j]]
        )
    return balanced_accuracy(test_y, votes.argmax(axis=1))


def evaluate_encoder(
    dataset: Path,
    module: torch.nn.Module,
    preprocess,
    fractions=(0.01, 0.1, 1.0),
    seed: int = 0,
    k: int = 20,
) -> dict:
    train, test = load_split(dataset, seed)
    train_x = extract_features(module, preprocess, train.paths)
    test_x = extract_features(module, preprocess, test.paths)
    results = {
        "classes": train.classes,
        "n_train": len(train.paths),
        "n_test": len(test.paths),
        "by_fraction": {},
    }
    for fraction in fractions:
        idx = stratified_fraction(train.labels, fraction, seed)
        results["by_fraction"][f"{fraction:g}"] = {
            "n_labels": len(idx),
            "linear_balanced_accuracy": linear_probe(
                train_x[idx], train.labels[idx], test_x, test.labels
            ),
            "knn_balanced_accuracy": knn(train_x[idx], train.labels[idx], test_x, test.labels, k),
        }
    return results


def random_twin(model_dir: Path, seed: int = 0):
    """The same architecture as a bundle, randomly initialised: the baseline to beat."""
    from pathssl.encoder.bundle import EncoderConfig, build_module, make_preprocess

    config = EncoderConfig.from_file(Path(model_dir) / "config.json")
    torch.manual_seed(seed)
    return build_module(config).eval(), make_preprocess(config)


def format_table(name: str, results: dict) -> str:
    lines = [
        f"{name}: {results['n_train']} train / {results['n_test']} test, "
        f"classes {results['classes']}",
        f"  {'labels':>8} {'encoder':<10} {'linear':>8} {'kNN':>8}",
    ]
    for fraction, row in results["by_fraction"].items():
        for enc, r in row.items():
            lines.append(
                f"  {fraction:>8} {enc:<10} {r['linear_balanced_accuracy']:8.3f} "
                f"{r['knn_balanced_accuracy']:8.3f}"
            )
    if "headline" in results:
        lines.append(
            "  mean over fractions and probes: "
            + ", ".join(f"{k} {v:.3f}" for k, v in results["headline"].items())
        )
    return "\n".join(lines)


def evaluate_bundle(
    dataset: Path,
    model_dir: Path,
    compare_random: bool = True,
    fractions=(0.01, 0.1, 1.0),
    seed: int = 0,
) -> dict:
    """Evaluate a bundle and, side by side, its randomly initialised twin."""
    from pathssl.encoder.bundle import load_encoder

    encoders = {"trained": load_encoder(model_dir)}
    if compare_random:
        encoders["random"] = random_twin(model_dir, seed)
    merged: dict = {}
    for name, (module, preprocess) in encoders.items():
        res = evaluate_encoder(dataset, module, preprocess, fractions, seed)
        merged.setdefault("classes", res["classes"])
        merged.setdefault("n_train", res["n_train"])
        merged.setdefault("n_test", res["n_test"])
        for fraction, row in res["by_fraction"].items():
            merged.setdefault("by_fraction", {}).setdefault(fraction, {})[name] = row
    # one number per encoder and task: mean balanced accuracy over label fractions and probes
    merged["headline"] = {
        name: float(
            np.mean(
                [
                    row[name][k]
                    for row in merged["by_fraction"].values()
                    for k in ("linear_balanced_accuracy", "knn_balanced_accuracy")
                ]
            )
        )
        for name in encoders
    }
    return merged
