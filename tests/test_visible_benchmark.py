"""The visible benchmark (#23): grouped folds, group bootstrap, tasks with groups, the bar for
a new default, and `pathssl benchmark` end to end, on tiny synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.evaluation import grouped_cv as cv
from pathssl.evaluation import visible_benchmark as vb
from pathssl.evaluation.visible_tasks import Task, labelled_set, make_task


def test_grouped_folds_put_each_group_in_one_fold_and_spread_each_class():
    group_labels = np.array([0] * 6 + [1] * 4 + [2] * 2)
    folds = cv.grouped_folds(group_labels, 3, seed=1)
    assert folds.shape == (12,) and set(folds) == {0, 1, 2}
    for c in range(3):  # a class's groups are dealt round the folds
        counts = np.bincount(folds[group_labels == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).tolist() == [4, 4, 4]


def test_group_identity_does_not_leak_through_the_folds():
    # features say which image a tile comes from, nothing about its class: tiles of one image
    # never straddle folds, so the probe is at chance (an ungrouped split would score 1.0)
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 4)
    labels = (rng.permutation(20) % 2)[groups]
    features = np.eye(20)[groups] + 0.01 * rng.standard_normal((80, 20))
    group_labels = np.zeros(20, np.int64)
    group_labels[groups] = labels
    correct = cv.cross_validated_correct(
        features, labels, cv.grouped_folds(group_labels, 5, 0)[groups]
    )
    n = cv.group_sums(np.ones(80), groups, 20)
    assert cv.balanced_accuracy(n, cv.group_sums(correct, groups, 20), group_labels) <= 0.6


def test_bootstrap_is_paired_and_brackets_the_point():
    group_labels = np.array([0, 0, 0, 1, 1, 1])
    n = np.array([4.0, 4, 4, 2, 2, 2])
    k = np.array([4.0, 3, 1, 2, 0, 1])
    draws = cv.bootstrap_draws(group_labels, 500, seed=0)
    reps = cv.bootstrap_balanced_accuracy(n, k, draws)
    point = cv.balanced_accuracy(n, k, group_labels)
    assert point == pytest.approx((8 / 12 + 3 / 6) / 2)
    lo, hi = cv.interval_95(reps)
    assert lo <= point <= hi and hi - lo > 0.05
    same = cv.bootstrap_balanced_accuracy(n, k, draws) - reps  # same draws: no spread
    assert cv.interval_95(same) == [0.0, 0.0]


def test_labelled_set_reads_groups_and_refuses_a_group_of_two_labels(tmp_path):
    for name in ("a1.png", "a2.png", "b1.png"):
        (tmp_path / "s" / "data").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "s" / "data" / name)
    (tmp_path / "s" / "labels.csv").write_text(
        "file,label,group\na1.png,A,p1\na2.png,A,p1\nb1.png,B,p2\n"
    )
    task = labelled_set(tmp_path / "s")
    assert task.classes == ["A", "B"] and task.labels.tolist() == [0, 0, 1]
    assert task.groups.tolist() == [0, 0, 1] and task.image_mpp is None
    (tmp_path / "s" / "labels.csv").write_text("file,label,group\na1.png,A,p1\nb1.png,B,p1\n")
    with pytest.raises(PathsslError, match="two labels"):
        labelled_set(tmp_path / "s")
    (tmp_path / "s" / "labels.csv").write_text("file,label\nmissing.png,A\n")
    with pytest.raises(PathsslError, match=r"missing\.png is listed but not found"):
        labelled_set(tmp_path / "s")


def _colour_images(tmp_path, n_groups: int = 8, per_group: int = 2) -> Task:
    """Red-ish (class r) and blue-ish (class b) 32 px images, two per patient."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(n_groups):
        label = "r" if g % 2 == 0 else "b"
        for i in range(per_group):
            pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            pixels[..., 0 if label == "r" else 2] += 150
            path = tmp_path / f"g{g}-{i}.png"
            Image.fromarray(pixels).save(path)
            rows.append((path, label, f"patient{g}"))
    rows.append((rows[0][0], "lonely", "patient-lonely"))  # one group only: left out
    return make_task("colours", rows, image_mpp=1.0)


def _encoder(name: str, colour: bool) -> vb.Encoder:
    def preprocess(image):
        return torch.from_numpy(np.asarray(image, np.float32).transpose(2, 0, 1) / 255)

    class Net(torch.nn.Module):
        def forward(self, x):
            if colour:
                return x.mean(dim=(2, 3))
            return torch.randn(len(x), 3, generator=torch.Generator().manual_seed(len(x)))

    return vb.Encoder(name, Net(), preprocess, input_px=16, target_mpp=1.0)


def test_benchmark_rows_intervals_and_bar(tmp_path):
    task = _colour_images(tmp_path)
    encoders = [_encoder("candidate", True), _encoder(vb.TWIN, False), _encoder("anchor", False)]
    res = vb.run_visible_benchmark([task], encoders, folds=4, repeats=2, n_boot=300)
    row = res["tasks"]["colours"]
    assert row["classes"] == ["b", "r"] and row["dropped_classes"] == ["lonely"]
    assert row["n_groups"] == 8 and row["encoders"]["candidate"]["tiles"] == 16 * 4  # 2x2 tiles
    assert row["encoders"]["candidate"]["balanced_accuracy"] == 1.0
    assert row["encoders"][vb.TWIN]["balanced_accuracy"] < 0.9
    for r in row["encoders"].values():
        assert r["interval_95"][0] <= r["balanced_accuracy"] <= r["interval_95"][1]
    diff = res["mean"]["differences"][f"candidate-minus-{vb.TWIN}"]
    assert diff["difference"] > 0.1 and diff["interval_95"][0] > 0
    bar = vb.done_when(res, "anchor")
    assert bar["beats_twin_by_10_points"] and bar["tasks_worse_than_anchor"] == []
    assert "mean over tasks" in vb.format_benchmark(res)


def test_pathssl_benchmark_end_to_end(tmp_path, capsys):
    from pathssl.cli import main
    from pathssl.encoder.export import random_bundle

    shared = tmp_path / "shared"
    rng = np.random.default_rng(0)
    (shared / "labelled" / "tiny" / "data").mkdir(parents=True)
    lines = ["file,label"]
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            shared / "labelled" / "tiny" / "data" / f"t{i}.png"
        )
        lines.append(f"t{i}.png,{'AB'[i % 2]}")
    (shared / "labelled" / "tiny" / "labels.csv").write_text("\n".join(lines) + "\n")
    mon = shared / "corpus" / "monuseg_he_40x"
    (mon / "train").mkdir(parents=True)
    meta = ["file,split,tss,organ_reported_by_monuseg,note"]
    for i in range(6):
        name = f"TCGA-0{i}-000{i}-01Z-00-DX1.tif"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            mon / "train" / name
        )
        meta.append(f"{name},train,0{i},{['liver', 'breast'][i % 2]},")
    (mon / "meta.csv").write_text("\n".join(meta) + "\n")
    random_bundle(tmp_path / "cand", "resnet18", 16, 1.0)
    random_bundle(tmp_path / "anc", "resnet18", 16, 0.5, seed=1)
    out = tmp_path / "res" / "vb.json"
    argv = [
        "benchmark",
        "--model",
        str(tmp_path / "cand"),
        "--anchor",
        str(tmp_path / "anc"),
        "--shared",
        str(shared),
        "--folds",
        "2",
        "--repeats",
        "1",
        "--boot",
        "100",
        "--output",
        str(out),
    ]
    plot = tmp_path / "res" / "vb.png"
    try:
        import matplotlib  # noqa: F401

        argv += ["--plot", str(plot)]
    except ImportError:  # requirements-train.txt only
        plot = None
    assert main(argv) == 0
    if plot is not None:
        with Image.open(plot) as im:
            assert im.format == "PNG" and min(im.size) > 100
    res = json.loads(out.read_text())
    assert list(res["tasks"]) == ["tiny", "monuseg-organ"]
    assert res["tasks"]["monuseg-organ"]["classes"] == ["breast", "lung"]
    assert res["tasks"]["monuseg-organ"]["encoders"]["anchor"]["tile_source_px"] == 32
    assert set(res["mean"]["encoders"]) == {"candidate", vb.TWIN, "anchor"}
    assert res["done_when"]["met"] in (True, False)
    assert "mean over tasks" in capsys.readouterr().out
