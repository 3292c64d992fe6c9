"""`pathssl evaluate-slides`: slide-level linear evaluation, trained slide encoder against mean
pooling, side by side (the Giga-SSL protocol): logistic regression (C=10, balanced classes)
on standardised slide embeddings, ROC-AUC by stratified k-fold cross-validation and with
small training sets (25 %, 100 and 50 slides), and a learning curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pathssl.embed.aggregation import MeanPooling
from pathssl.errors import PathsslError
from pathssl.slide_ssl.data import EmbeddedSlide, find_embedded, read_labels


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=10.0, class_weight="balanced", max_iter=5000)
    )


def _auc(clf, x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    proba = clf.predict_proba(x)
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def cross_validated_auc(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> list[float]:
    from sklearn.model_selection import StratifiedKFold

    folds = min(folds, int(np.bincount(y).min()))
    out = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        out.append(_auc(_classifier().fit(x[train], y[train]), x[test], y[test]))
    return out


def small_training_set_auc(
    x: np.ndarray, y: np.ndarray, n_train: int, repeats: int = 10, seed: int = 0
) -> list[float]:
    """Train on n_train slides (stratified draws), test on all the others; repeated."""
    from sklearn.model_selection import train_test_split

    out = []
    for r in range(repeats):
        xtr, xte, ytr, yte = train_test_split(
            x, y, train_size=n_train, stratify=y, random_state=seed + r
        )
        out.append(_auc(_classifier().fit(xtr, ytr), xte, yte))
    return out


def slide_embeddings(root: Path, slide_encoder_dir: Path | None) -> tuple[list[str], dict]:
    from pathssl.slide_ssl.bundle import load_slide_aggregator

    aggregators = {"mean": MeanPooling()}
    if slide_encoder_dir is not None:
        trained = load_slide_aggregator(slide_encoder_dir)
        if trained is None:
            raise PathsslError(f"{slide_encoder_dir}: no slide_encoder.json in this bundle")
        aggregators = {"giga-ssl": trained, **aggregators}
    names, emb = [], {k: [] for k in aggregators}
    for folder in find_embedded(root):
        slide = EmbeddedSlide.load(folder)
        names.append(slide.name)
        for key, agg in aggregators.items():
            emb[key].append(agg(slide.features, slide.grid_rc))
    return names, {k: np.stack(v) for k, v in emb.items()}


def evaluate_slides(
    root: Path, labels_csv: Path, slide_encoder_dir: Path | None, seed: int = 0
) -> dict:
    names, emb = slide_embeddings(root, slide_encoder_dir)
    labels = read_labels(labels_csv)
    keep = [i for i, n in enumerate(names) if n in labels]
    if len(keep) < 10:
        raise PathsslError(f"{labels_csv}: only {len(keep)} labelled embedded slides; need 10+")
    classes = sorted({labels[names[i]] for i in keep})
    y = np.array([classes.index(labels[names[i]]) for i in keep])
    n = len(y)
    sizes = sorted(
        {s for s in (round(0.25 * n), 50, 100) if 2 * len(classes) <= s < n - len(classes)}
    )
    curve = sorted(
        {s for s in (8, 16, 25, 50, 100, 200) if 2 * len(classes) <= s < n - len(classes)}
    )
    results: dict = {"slides": n, "classes": classes, "methods": {}}
    for method, x_all in emb.items():
        x = x_all[keep]
        cv = cross_validated_auc(x, y, seed=seed)
        row = {
            "cv_auc_mean": float(np.mean(cv)),
            "cv_auc_std": float(np.std(cv)),
            "train_sizes": {},
            "learning_curve": {},
        }
        for s in sizes:
            aucs = small_training_set_auc(x, y, s, seed=seed)
            row["train_sizes"][str(s)] = {
                "auc_mean": float(np.mean(aucs)),
                "auc_std": float(np.std(aucs)),
            }
        for s in curve:
            row["learning_curve"][str(s)] = float(
                np.mean(small_training_set_auc(x, y, s, seed=seed))
            )
        results["methods"][method] = row
    return results


def format_slide_table(name: str, results: dict) -> str:
    methods = list(results["methods"])
    sizes = list(next(iter(results["methods"].values()))["train_sizes"])
    head = f"  {'method':<10} {'5-fold AUC':>14}" + "".join(f" {'n=' + s:>14}" for s in sizes)
    lines = [f"{name}: {results['slides']} slides, classes {results['classes']}", head]
    for m in methods:
        r = results["methods"][m]
        cells = "".join(
            f" {v['auc_mean']:8.3f}±{v['auc_std']:.3f}" for v in r["train_sizes"].values()
        )
        lines.append(f"  {m:<10} {r['cv_auc_mean']:8.3f}±{r['cv_auc_std']:.3f}{cells}")
    return "\n".join(lines)


def plot_learning_curves(results_by_task: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results_by_task)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method, row in results_by_task[task]["methods"].items():
            xs = [int(s) for s in row["learning_curve"]]
            ax.plot(xs, list(row["learning_curve"].values()), marker="o", label=method)
        ax.set_title(task)
        ax.set_xlabel("training slides")
        ax.set_ylabel("ROC-AUC")
        ax.set_ylim(0.4, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: Path, payload: dict) -> None:
    from pathssl.atomic import staged_outputs

    with staged_outputs(Path(path).parent) as stage:
        stage.path(Path(path).name).write_text(json.dumps(payload, indent=2) + "\n")
