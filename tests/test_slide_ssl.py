"""Slide-level SSL: sparse grid operations, augmented tile embeddings, cohorts, training with
exact resume, the slide encoder in a bundle, and slide-level evaluation."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pathssl.slide_ssl.model import SlideEncoder, SlideEncoderConfig
from pathssl.slide_ssl.sparse_grid import neighbour_index, pool_grid


def test_neighbour_index_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    coords = torch.from_numpy(np.unique(rng.integers(0, 12, (60, 2)), axis=0))
    nbr = neighbour_index(coords)
    lookup = {tuple(c): i for i, c in enumerate(coords.tolist())}
    from pathssl.slide_ssl.sparse_grid import OFFSETS

    for i, (r, c) in enumerate(coords.tolist()):
        for k, (dr, dc) in enumerate(OFFSETS):
            assert int(nbr[k, i]) == lookup.get((r + dr, c + dc), len(coords))


def test_pooling_averages_cells() -> None:
    x = torch.tensor([[1.0], [3.0], [10.0]])
    coords = torch.tensor([[0, 0], [1, 1], [2, 0]])
    pooled, cells = pool_grid(x, coords, 2)
    assert cells.tolist() == [[0, 0], [1, 0]] and pooled.squeeze(1).tolist() == [2.0, 10.0]


def test_encoder_uses_layout_batches_and_is_translation_invariant() -> None:
    torch.manual_seed(0)
    enc = SlideEncoder(SlideEncoderConfig(in_dim=8, width=16, out_dim=12)).eval()
    rng = np.random.default_rng(0)
    coords = torch.from_numpy(np.unique(rng.integers(0, 10, (40, 2)), axis=0))
    feats = torch.randn(len(coords), 8)
    with torch.no_grad():
        a = enc(feats, coords)
        shifted = enc(feats, coords + torch.tensor([64, 128]))  # a multiple of every pooling
        shuffled = enc(feats[torch.randperm(len(feats))], coords)  # same tiles, other places
        many = enc.forward_many([(feats, coords), (feats[:10], coords[:10])])
    torch.testing.assert_close(a, shifted)
    assert (a - shuffled).abs().max() > 1e-3  # unlike a mean, it sees where tiles are
    torch.testing.assert_close(many[0], a, rtol=1e-5, atol=1e-5)
    assert a.shape == (12,)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, tiny_bundle, cmu_slide: Path) -> Path:
    from pathssl.slide_ssl.cohorts import build_cohort, default_pools, embed_pool

    a, b = default_pools(None, cmu_slide)
    pools = [embed_pool(tiny_bundle, a, 2), embed_pool(tiny_bundle, b, 2)]
    out = tmp_path_factory.mktemp("cohort") / "segregated"
    build_cohort(pools, "segregated", 24, out)
    return out


def test_cohort_files_and_labels(cohort: Path) -> None:
    with open(cohort / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and {r["label"] for r in rows} == {"0", "1"}
    with h5py.File(cohort / rows[0]["slide"] / "features.h5") as h5:
        n, c = h5["features"].shape
        assert h5["augmented_features"].shape == (2, n, c)
        assert (h5["coords"][:] % 224 == 0).all()
        assert not np.allclose(h5["augmented_features"][0], h5["features"][:])


def _cfg(cohort: Path, out: Path, **kw: object):
    from pathssl.slide_ssl.train import SlideSSLConfig

    values = dict(
        embeddings=str(cohort),
        output=str(out),
        width=32,
        out_dim=32,
        proj_dim=16,
        tiles_per_view=64,
        batch_size=8,
        steps=6,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        temperature=0.1,
    )
    values.update(kw)
    return SlideSSLConfig(**values)


def test_training_resume_export_and_embed(
    cohort: Path, tmp_path: Path, tiny_bundle_dir: Path, cmu_slide: Path
) -> None:
    from pathssl.pretrain.trainer import load_checkpoint
    from pathssl.slide_ssl.bundle import export_slide_encoder
    from pathssl.slide_ssl.train import train_slide_encoder

    whole = train_slide_encoder(_cfg(cohort, tmp_path / "whole"), resume=False)
    cfg = _cfg(cohort, tmp_path / "split")
    train_slide_encoder(cfg, resume=False, stop_after_steps=3)
    split = train_slide_encoder(cfg, resume=True)
    a = load_checkpoint(whole / "checkpoints/last.pt")["model"]
    b = load_checkpoint(split / "checkpoints/last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert (whole / "log.csv").read_text() == (split / "log.csv").read_text()

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    record = export_slide_encoder(whole / "checkpoints/last.pt", bundle)
    assert record["steps"] == 6 and len(record["weights_sha256"]) == 64
    from pathssl.embed import EmbedOptions, embed_slide
    from pathssl.encoder.bundle import load_bundle

    runs = [
        embed_slide(
            cmu_slide, tmp_path / f"emb{i}", load_bundle(bundle), EmbedOptions(num_workers=0)
        )
        for i in range(2)
    ]
    assert runs[0]["slide_embedding"]["aggregator"] == "giga-ssl"
    assert runs[0]["slide_embedding"]["dim"] == 32
    vecs = [
        json.loads((tmp_path / f"emb{i}/image-neural-representation.json").read_text())
        for i in range(2)
    ]
    assert vecs[0] == vecs[1]  # deterministic
    assert np.linalg.norm(vecs[0][0]["features"]) == pytest.approx(1.0, abs=1e-5)


def test_loss_falls(cohort: Path, tmp_path: Path) -> None:
    from pathssl.slide_ssl.train import train_slide_encoder

    out = train_slide_encoder(
        _cfg(cohort, tmp_path / "r", steps=40, lr=3e-3, log_every=1), resume=False
    )
    with open(out / "log.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert np.mean(losses[-8:]) < np.mean(losses[:8])


def test_evaluate_slides_computes_the_protocol(cohort: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pathssl.slide_ssl.data import EmbeddedSlide, find_embedded
    from pathssl.slide_ssl.evaluate import evaluate_slides, format_slide_table

    res = evaluate_slides(cohort, cohort / "labels.csv", None)
    assert list(res["methods"]) == ["mean"] and res["slides"] == 24
    # recompute the mean-pooling cross-validated AUC independently
    slides = [EmbeddedSlide.load(f) for f in find_embedded(cohort)]
    with open(cohort / "labels.csv") as fh:
        labels = {r["slide"]: int(r["label"]) for r in csv.DictReader(fh)}
    x = np.stack([s.features.astype(np.float64).mean(axis=0) for s in slides])
    y = np.array([labels[s.name] for s in slides])
    aucs = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=10.0, class_weight="balanced", max_iter=5000)
        )
        clf.fit(x[tr], y[tr])
        aucs.append(roc_auc_score(y[te], clf.predict_proba(x[te])[:, 1]))
    assert res["methods"]["mean"]["cv_auc_mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert "mean" in format_slide_table("t", res)
