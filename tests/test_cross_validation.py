"""`pathssl evaluate --folds K`: cross-validated probes for small labelled sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.evaluation.cross_validation import (
    all_images,
    class_weights,
    cross_validate_bundle,
    paired_bootstrap,
    stratified_folds,
)
from pathssl.evaluation.tiles import balanced_accuracy


def colour_folders(root: Path, n_per_class: dict[str, int], split: bool = False) -> Path:
    """Image folders of visibly different colours; with split=True, a train/ and test/ layout."""
    rng = np.random.default_rng(0)
    colours = [(220, 120, 200), (60, 60, 200), (120, 200, 90)]
    for (cls, n), colour in zip(n_per_class.items(), colours, strict=False):
        for i in range(n):
            part = ("test" if i % 3 == 0 else "train") if split else ""
            d = root / part / cls
            d.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(-20, 20, (40, 40, 3))
            Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(
                d / f"{i}.png"
            )
    return root


def test_folds_are_stratified_balanced_and_seeded() -> None:
    labels = np.repeat([0, 1, 2], [9, 2, 5])
    folds = stratified_folds(labels, 4, seed=0)
    sizes = np.bincount(folds, minlength=4)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 16
    for c in range(3):  # each class spread over as many folds as it has images (up to K)
        assert len(np.unique(folds[labels == c])) == min(4, int((labels == c).sum()))
    assert np.array_equal(folds, stratified_folds(labels, 4, seed=0))
    assert not np.array_equal(folds, stratified_folds(labels, 4, seed=1))
    loo = stratified_folds(labels, 100, seed=0)  # K >= n: leave-one-out
    assert sorted(loo.tolist()) == list(range(16))


def test_weighted_correct_is_balanced_accuracy_and_the_bootstrap_brackets_it() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [20, 5, 11])
    pred = np.where(rng.random(36) < 0.7, labels, (labels + 1) % 3)
    correct = (pred == labels).astype(float)
    assert class_weights(labels) @ correct == pytest.approx(balanced_accuracy(labels, pred))
    assert paired_bootstrap(labels, correct, correct) == (0.0, 0.0)
    always = np.ones(36)
    lo, hi = paired_bootstrap(labels, always, correct)
    gap = class_weights(labels) @ (always - correct)
    assert 0 < lo <= gap <= hi


def test_train_and_test_folders_are_pooled(tmp_path: Path) -> None:
    data = all_images(colour_folders(tmp_path / "d", {"a": 6, "b": 6}, split=True))
    assert len(data.paths) == 12 and np.bincount(data.labels).tolist() == [6, 6]
    colour_folders(tmp_path / "one", {"a": 5, "b": 1})
    with pytest.raises(PathsslError, match="two class folders of 2\\+ images"):
        all_images(tmp_path / "one")


def test_cross_validation_tests_every_image(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    root = colour_folders(tmp_path / "d", {"a": 6, "b": 4, "c": 5})
    res = cross_validate_bundle(root, tiny_bundle_dir, folds=100, seeds=(0, 1))
    assert res["n_images"] == 15 and res["folds"] == 15 and res["protocol"] == "cross-validation"
    trained, random = res["encoders"]["trained"], res["encoders"]["random"]
    # same weights (an untrained tiny bundle and its seeded twin): no difference, exactly
    assert trained["linear_balanced_accuracy"] == random["linear_balanced_accuracy"]
    assert trained["minus_random"]["linear"] == {"difference": 0.0, "interval_95": (0.0, 0.0)}
    # three colours are separable by any network: kNN on held-out images is right
    assert trained["knn_balanced_accuracy"] == 1.0 and trained["knn_std"] == 0.0


def test_cli_folds_writes_the_protocol_and_refuses_one_fold(
    tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    root = colour_folders(tmp_path / "d", {"a": 6, "b": 6})
    out = tmp_path / "res" / "cv.json"
    cli = [sys.executable, "-m", "pathssl.cli", "evaluate", str(root), "--model"]
    proc = subprocess.run(
        [*cli, str(tiny_bundle_dir), "--folds", "4", "--seeds", "2", "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4-fold cross-validation, repeats [0, 1]" in proc.stdout
    task = json.loads(out.read_text())["tasks"]["d"]
    assert task["folds"] == 4 and set(task["encoders"]) == {"trained", "random"}
    proc = subprocess.run(
        [*cli, str(tiny_bundle_dir), "--folds", "1"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "needs at least 2 folds" in proc.stderr
    assert "Traceback" not in proc.stderr
