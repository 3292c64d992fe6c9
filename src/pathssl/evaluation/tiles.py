"""`pathssl evaluate`: frozen-encoder linear probe and kNN on an image-folder dataset.

Layout: DATASET/<class>/*.png, or DATASET/train/<class>/* and DATASET/test/<class>/*
(as MHIST, CRC-100K, BACH or PCam can be laid out). Without train/test folders a seeded,
stratified 70/30 split is used. Reported: balanced accuracy (as eva reports), for 1%, 10%
and 100% of the training labels, as mean and spread over seeds (each seed draws its own label
subset and, without train/test folders, its own split).

Images larger than one tile (e.g. MoNuSeg's 1000 px regions) are evaluated at the encoder's
resolution when the dataset states its own: a `dataset.json` with `{"mpp": 0.25}` (or
`--image-mpp`). Each image is then cut into non-overlapping tiles of the encoder's field of
view and its feature is the mean tile feature. Otherwise each image is centre-cropped and
resized whole, as `pathssl.load_encoder`'s preprocess does.
"""

from __future__ import annotations

import json
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


def read_classes(root: Path, classes: list[str] | None = None) -> LabelledImages:
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
        train = read_classes(root / "train")
        return train, read_classes(root / "test", train.classes)
    data = read_classes(root)
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


def dataset_mpp(root: Path) -> float | None:
    """The resolution a dataset folder states in its dataset.json, if any."""
    meta = Path(root) / "dataset.json"
    if not meta.is_file():
        return None
    try:
        return float(json.loads(meta.read_text())["mpp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PathsslError(f'{meta}: expected {{"mpp": <microns per pixel>}} ({exc})') from exc


def tile_image(image: Image.Image, crop_px: int) -> list[Image.Image]:
    """Non-overlapping crop_px squares covering the image (centred); the whole image if smaller."""
    w, h = image.size
    if w < crop_px or h < crop_px:
        return [image]
    nx, ny = w // crop_px, h // crop_px
    x0, y0 = (w - nx * crop_px) // 2, (h - ny * crop_px) // 2
    return [
        image.crop(
            (x0 + i * crop_px, y0 + j * crop_px, x0 + (i + 1) * crop_px, y0 + (j + 1) * crop_px)
        )
        for j in range(ny)
        for i in range(nx)
    ]


@torch.inference_mode()
def extract_features(
    module: torch.nn.Module,
    preprocess,
    paths: list[Path],
    batch_size: int = 64,
    crop_px: int | None = None,
) -> np.ndarray:
    """One feature per image: of the whole image, or (crop_px given) the mean over its tiles."""
    module.eval()
    out = []
    for start in range(0, len(paths), batch_size):
        batch, owner = [], []
        for k, p in enumerate(paths[start : start + batch_size]):
            with Image.open(p) as im:
                rgb = im.convert("RGB")
            for crop in tile_image(rgb, crop_px) if crop_px else [rgb]:
                batch.append(preprocess(crop))
                owner.append(k)
        feats = torch.cat(
            [
                module(torch.stack(batch[i : i + batch_size]))
                for i in range(0, len(batch), batch_size)
            ]
        ).float()
        owner_t = torch.tensor(owner)
        n = int(owner_t.max()) + 1
        sums = torch.zeros(n, feats.shape[1]).index_add_(0, owner_t, feats)
        out.append((sums / torch.bincount(owner_t, minlength=n)[:, None]).numpy())
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


def linear_probe_predictions(train_x, train_y, test_x) -> np.ndarray:
    """Logistic regression on standardised features (the external evaluation's probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(train_x, train_y)
    return clf.predict(test_x)


def linear_probe(train_x, train_y, test_x, test_y) -> float:
    if len(np.unique(train_y)) < 2:
        return float("nan")
    return balanced_accuracy(test_y, linear_probe_predictions(train_x, train_y, test_x))


def knn_predictions(train_x, train_y, test_x, k: int = 20) -> np.ndarray:
    """Cosine kNN with similarity-weighted votes. k is capped at the smallest class count, so
    that with few labels the vote is not decided by class sizes alone."""
    k = max(1, min(k, int(np.unique(train_y, return_counts=True)[1].min()), len(train_y)))
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True).clip(1e-12)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True).clip(1e-12)
    sim = b @ a.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(test_x))
    votes = np.zeros((len(test_x), int(train_y.max()) + 1))
    for j in range(k):
        np.add.at(votes, (rows, train_y[top[:, j]]), sim[rows, top[:, j]])
    return votes.argmax(axis=1)


def knn(train_x, train_y, test_x, test_y, k: int = 20) -> float:
    return balanced_accuracy(test_y, knn_predictions(train_x, train_y, test_x, k))


def _features(module, preprocess, paths, cache: dict, crop_px: int | None) -> np.ndarray:
    todo = [p for p in paths if p not in cache]
    if todo:
        for p, f in zip(
            todo, extract_features(module, preprocess, todo, crop_px=crop_px), strict=True
        ):
            cache[p] = f
    return np.stack([cache[p] for p in paths])


def evaluate_encoder(
    dataset: Path,
    module: torch.nn.Module,
    preprocess,
    *,
    fractions=(0.01, 0.1, 1.0),
    seeds=(0,),
    k: int = 20,
    crop_px: int | None = None,
) -> dict:
    """Linear probe and kNN per label fraction, mean and standard deviation over seeds."""
    cache: dict[Path, np.ndarray] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        train, test = load_split(dataset, seed)
        train_x = _features(module, preprocess, train.paths, cache, crop_px)
        test_x = _features(module, preprocess, test.paths, cache, crop_px)
        for fraction in fractions:
            idx = stratified_fraction(train.labels, fraction, seed)
            row = per_seed.setdefault(f"{fraction:g}", {"linear": [], "knn": [], "n": []})
            row["n"].append(len(idx))
            row["linear"].append(linear_probe(train_x[idx], train.labels[idx], test_x, test.labels))
            row["knn"].append(knn(train_x[idx], train.labels[idx], test_x, test.labels, k))
    results = {
        "classes": train.classes,
        "n_train": len(train.paths),
        "n_test": len(test.paths),
        "seeds": list(seeds),
        "tiled_at_px": crop_px,
        "by_fraction": {},
    }
    for fraction, row in per_seed.items():
        results["by_fraction"][fraction] = {
            "n_labels": int(np.median(row["n"])),
            "linear_balanced_accuracy": float(np.mean(row["linear"])),
            "linear_std": float(np.std(row["linear"])),
            "knn_balanced_accuracy": float(np.mean(row["knn"])),
            "knn_std": float(np.std(row["knn"])),
            "per_seed": {"linear": row["linear"], "knn": row["knn"]},
        }
    return results


def random_twin(model_dir: Path, seed: int = 0):
    """The same architecture as a bundle, randomly initialised: the baseline to beat."""
    from pathssl.encoder.bundle import EncoderConfig, build_module, make_preprocess

    config = EncoderConfig.from_file(Path(model_dir) / "config.json")
    torch.manual_seed(seed)
    return build_module(config).eval(), make_preprocess(config)


def bundle_encoders(
    model_dir: Path,
    compare: dict[str, Path] | None,
    compare_random: bool,
    image_mpp: float | None,
    seed: int = 0,
):
    """(name, module, preprocess, crop_px) for the bundle ("trained"), the bundles in
    `compare` and the random twin ("random"); crop_px tiles images of `image_mpp` at each
    encoder's own field of view (None: resize whole)."""
    from pathssl.encoder.bundle import EncoderConfig, load_encoder

    bundles = {"trained": Path(model_dir), **(compare or {})}
    for name, bundle_dir in [*bundles.items(), *([("random", None)] if compare_random else [])]:
        config = EncoderConfig.from_file((bundle_dir or Path(model_dir)) / "config.json")
        crop_px = round(config.input_size_px * config.target_mpp / image_mpp) if image_mpp else None
        module, preprocess = (
            random_twin(model_dir, seed) if bundle_dir is None else load_encoder(bundle_dir)
        )
        yield name, module, preprocess, crop_px


def format_table(name: str, results: dict) -> str:
    lines = [
        f"{name}: {results['n_train']} train / {results['n_test']} test, "
        f"classes {results['classes']}, seeds {results.get('seeds', [0])}"
        + (f", images tiled at {results['tiled_at_px']} px" if results.get("tiled_at_px") else ""),
        f"  {'labels':>8} {'encoder':<10} {'linear':>14} {'kNN':>14}",
    ]
    for fraction, row in results["by_fraction"].items():
        for enc, r in row.items():
            lines.append(
                f"  {fraction:>8} {enc:<10} "
                f"{r['linear_balanced_accuracy']:8.3f} ±{r.get('linear_std', 0):.3f} "
                f"{r['knn_balanced_accuracy']:8.3f} ±{r.get('knn_std', 0):.3f}"
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
    *,
    compare_random: bool = True,
    fractions=(0.01, 0.1, 1.0),
    seeds=(0,),
    image_mpp: float | None = None,
    compare: dict[str, Path] | None = None,
    resize_whole: bool = False,
) -> dict:
    """Evaluate a bundle and, side by side, its randomly initialised twin (and any other
    bundles in `compare`, by name), each at its own resolution."""
    mpp = None if resize_whole else image_mpp or dataset_mpp(dataset)
    merged: dict = {}
    for name, module, preprocess, crop_px in bundle_encoders(
        model_dir, compare, compare_random, mpp, seeds[0]
    ):
        res = evaluate_encoder(
            dataset, module, preprocess, fractions=fractions, seeds=seeds, crop_px=crop_px
        )
        for key in ("classes", "n_train", "n_test", "seeds", "tiled_at_px"):
            merged.setdefault(key, res[key])
        for fraction, row in res["by_fraction"].items():
            merged.setdefault("by_fraction", {}).setdefault(fraction, {})[name] = row
    # one number per encoder and task: mean balanced accuracy over label fractions and probes
    names = next(iter(merged["by_fraction"].values())).keys()
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
        for name in names
    }
    return merged
