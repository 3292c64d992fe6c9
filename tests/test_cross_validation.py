"""`pathssl evaluate --folds K`: cross-validated probes for small labelled sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images

from pathssl.errors import PathsslError
from pathssl.evaluation.cross_validation import (
    all_images,
    class_weights,
    cross_validate_bundle,
    paired_bootstrap,
    stratified_folds,
)
from pathssl.evaluation.tiles import balanced_accuracy

PINK, BLUE, GREEN = (220, 120, 200), (60, 60, 200), (120, 200, 90)


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
    for part, n in (("train", 4), ("test", 2)):
        make_images(tmp_path / "d" / part / "a", n, 40, PINK)
        make_images(tmp_path / "d" / part / "b", n, 40, BLUE)
    data = all_images(tmp_path / "d")
    assert len(data.paths) == 12 and np.bincount(data.labels).tolist() == [6, 6]
    make_images(tmp_path / "one" / "a", 5, 40, PINK)
    make_images(tmp_path / "one" / "b", 1, 40, BLUE)
    with pytest.raises(PathsslError, match="two class folders of 2\\+ images"):
        all_images(tmp_path / "one")


def test_cross_validation_tests_every_image(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    root = tmp_path / "d"
    for cls, n, colour in (("a", 6, PINK), ("b", 4, BLUE), ("c", 5, GREEN)):
        make_images(root / cls, n, 40, colour)
    res = cross_validate_bundle(root, tiny_bundle_dir, folds=100, seeds=(0, 1))
    assert res["n_images"] == 15 and res["folds"] == 15 and res["protocol"] == "cross-validation"
    assert res["seeds"] == [0]  # leave-one-out: no seed changes it, so one repeat
    trained, random = res["encoders"]["trained"], res["encoders"]["random"]
    # same weights (an untrained tiny bundle and its seeded twin): no difference, exactly
    assert trained["linear_balanced_accuracy"] == random["linear_balanced_accuracy"]
    assert trained["minus_random"]["linear"] == {"difference": 0.0, "interval_95": (0.0, 0.0)}
    # three colours are separable by any network: kNN on held-out images is right
    assert trained["knn_balanced_accuracy"] == 1.0 and trained["knn_std"] == 0.0


def test_cli_folds_writes_the_protocol_and_refuses_one_fold(
    tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    root = tmp_path / "d"
    make_images(root / "a", 6, 40, PINK)
    make_images(root / "b", 6, 40, BLUE)
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
