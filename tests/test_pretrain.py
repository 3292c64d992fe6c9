"""Pretraining: augmentations, data, each method's loss, DDP through torchrun, exact resume,
export, and the evaluation protocol."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.data import (
    PretrainDataset,
    RankBatchSampler,
    TileSource,
    collate_views,
    sample_generator,
)
from pathssl.pretrain.methods import METHODS
from pathssl.pretrain.trainer import build_method, load_checkpoint, pretrain
from pathssl.tiles.augment import ViewSpec, hed_jitter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "slides.csv"
    path.write_text(f"path,stain,mpp\n{cmu_slide},H&E,\n")
    return path


def tiny_config(manifest: Path, out: Path, method: str = "simclr", **kw: object) -> PretrainConfig:
    values = dict(
        method=method,
        architecture="test_resnet",
        input_px=32,
        target_mpps=[1.0, 2.0],
        manifest=str(manifest),
        batch_size=8,
        steps=6,
        warmup_steps=2,
        lr=0.01,
        num_workers=0,
        checkpoint_every=3,
        log_every=1,
        output=str(out),
    )
    if method == "dino":
        values["method_kwargs"] = {
            "out_dim": 256,
            "hidden_dim": 64,
            "bottleneck_dim": 32,
            "n_local": 2,
            "local_px": 16,
        }
    if method == "moco":
        values["method_kwargs"] = {"memory_bank_size": 64}
    values.update(kw)
    return PretrainConfig(**values)


def test_views_are_functions_of_the_index(cmu_slide: Path, manifest: Path) -> None:
    source = TileSource(manifest, [], [1.0], 48)
    ds = PretrainDataset(source, [ViewSpec(32), ViewSpec(32)], seed=3)
    a, b = ds[17], ds[17]
    assert [v.shape for v in a] == [(3, 32, 32)] * 2
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(ds[18][0], a[0])
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in a)


def test_samples_come_from_tissue(manifest: Path) -> None:
    source = TileSource(manifest, [], [1.0], 64)
    tiles = torch.stack([source.sample(sample_generator(0, i)) for i in range(40)]).float()
    rgb = tiles / 255
    saturation = (rgb.max(1).values - rgb.min(1).values) / rgb.max(1).values.clamp(min=1e-3)
    assert (saturation.mean(dim=(1, 2)) > 0.1).float().mean() > 0.9  # stained, not glass


def test_hed_jitter_identity_and_effect() -> None:
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 16, 16) * 0.8 + 0.1
    torch.testing.assert_close(hed_jitter(rgb, 0.0, 0.0, g), rgb, atol=1e-4, rtol=1e-4)
    assert (hed_jitter(rgb, 0.2, 0.1, g) - rgb).abs().mean() > 1e-3


def test_rank_batches_are_disjoint_and_resume() -> None:
    r0 = list(RankBatchSampler(4, 0, 2, 0, 5))
    r1 = list(RankBatchSampler(4, 1, 2, 0, 5))
    flat0, flat1 = {i for b in r0 for i in b}, {i for b in r1 for i in b}
    assert not flat0 & flat1 and len(flat0) == len(flat1) == 20
    assert list(RankBatchSampler(4, 1, 2, 3, 5)) == r1[3:]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_loss_falls_on_a_fixed_batch(method: str, manifest: Path, tmp_path: Path) -> None:
    # MoCo without its memory bank here: on one batch repeated, the bank fills with copies of
    # the batch's own keys (false negatives), and the loss need not fall
    extra = {"method_kwargs": {"memory_bank_size": 0}} if method == "moco" else {}
    cfg = tiny_config(manifest, tmp_path, method, **extra)
    model = build_method(cfg)
    source = TileSource(manifest, [], [1.0], 32)
    batch = collate_views([PretrainDataset(source, model.view_specs(), 0)[i] for i in range(16)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = model(batch, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if model.uses_momentum:
            model.momentum_update(0.9)
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


@pytest.mark.parametrize("method", ["dino", "moco"])
def test_exact_resume(method: str, manifest: Path, tmp_path: Path) -> None:
    whole = pretrain(tiny_config(manifest, tmp_path / "whole", method), resume=False)
    cfg = tiny_config(manifest, tmp_path / "split", method)
    pretrain(cfg, resume=False, stop_after_steps=3)
    assert load_checkpoint(tmp_path / "split/checkpoints/last.pt")["step"] == 3
    split = pretrain(cfg, resume=True)
    a = load_checkpoint(whole / "checkpoints/last.pt")
    b = load_checkpoint(split / "checkpoints/last.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:  # teacher, centre / memory bank included
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)

    def losses(run: Path) -> list[str]:
        with open(run / "log.csv") as fh:
            return [(r["step"], r["loss"]) for r in csv.DictReader(fh)]

    assert losses(whole) == losses(split) and len(losses(whole)) == 6


def test_export_chooses_the_online_or_momentum_network(manifest: Path, tmp_path: Path) -> None:
    from pathssl.encoder.bundle import load_bundle
    from pathssl.errors import PathsslError
    from pathssl.pretrain.export import export_checkpoint

    run = pretrain(tiny_config(manifest, tmp_path / "moco", "moco", steps=3), resume=False)
    state = load_checkpoint(run / "checkpoints/last.pt")["model"]

    def weights(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    online, key = weights("backbone."), weights("key_backbone.")
    # after three steps the key encoder (an EMA) has moved away from the online network
    assert any(not torch.equal(online[k], key[k]) for k in online if online[k].is_floating_point())
    for network, expected, label in [
        (None, online, "moco (online network)"),
        ("momentum", key, "moco (momentum key network)"),
    ]:
        out = tmp_path / f"bundle-{network}"
        config = export_checkpoint(run / "checkpoints/last.pt", out, network=network)
        assert label in config.provenance
        assert config.name.endswith("moco-momentum-3steps" if network else "moco-3steps")
        for name, value in load_bundle(out).module.state_dict().items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    simclr = pretrain(tiny_config(manifest, tmp_path / "simclr", steps=1), resume=False)
    with pytest.raises(PathsslError, match="simclr has no momentum network"):
        export_checkpoint(simclr / "checkpoints/last.pt", tmp_path / "x", network="momentum")
    assert not (tmp_path / "x").exists()


def test_cli_export_and_embed(manifest: Path, tmp_path: Path, cmu_slide: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pathssl.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )

    config = ROOT / "configs" / "pretrain" / "byol.yaml"
    proc = cli(
        "pretrain",
        "--config",
        str(config),
        "--set",
        f"manifest={manifest}",
        "--set",
        "image_dirs=[]",
        "--set",
        "architecture=test_resnet",
        "--set",
        "input_px=32",
        "--set",
        "steps=4",
        "--set",
        "batch_size=4",
        "--set",
        "num_workers=1",
        "--set",
        f"output={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "run" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [4]
    assert float(rows[0]["images_per_s"]) > 0 and 0 < float(rows[0]["collapse"]) < 2
    proc = cli(
        "export", str(tmp_path / "run/checkpoints/last.pt"), "--output", str(tmp_path / "bundle")
    )
    assert proc.returncode == 0, proc.stderr
    from pathssl.encoder.bundle import load_bundle

    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.config.trained and "byol (teacher network)" in bundle.config.provenance
    # the run's records travel with the weights (the model card's data)
    log_rows = (tmp_path / "bundle" / "training-log.csv").read_text().splitlines()
    assert log_rows[0].startswith("step,loss") and len(log_rows) == 2
    assert "1 slides" in (tmp_path / "bundle" / "training-data.txt").read_text()
    assert "method: byol" in (tmp_path / "bundle" / "training-config.yaml").read_text()
    # the exported encoder is BYOL's target network
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    teacher = {
        k[len("teacher_backbone.") :]: v
        for k, v in state.items()
        if k.startswith("teacher_backbone.")
    }
    for key, value in bundle.module.state_dict().items():
        torch.testing.assert_close(value, teacher[key])
    # `--network online` exports the student instead, and says so
    proc = cli(
        "export",
        str(tmp_path / "run/checkpoints/last.pt"),
        "--output",
        str(tmp_path / "student"),
        "--network",
        "online",
    )
    assert proc.returncode == 0, proc.stderr
    student = load_bundle(tmp_path / "student")
    assert "byol (online network)" in student.config.provenance
    for key, value in student.module.state_dict().items():
        torch.testing.assert_close(value, state[f"backbone.{key}"], rtol=0, atol=0)
    proc = cli(
        "embed",
        str(cmu_slide),
        "--model",
        str(tmp_path / "bundle"),
        "-o",
        str(tmp_path / "emb"),
        "--max-tiles",
        "4",
    )
    assert proc.returncode == 0, proc.stderr


def test_torchrun_two_ranks_keep_identical_weights(manifest: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "pathssl.cli",
            "pretrain",
            "--set",
            "method=simclr",
            "--set",
            "architecture=test_resnet",
            "--set",
            "input_px=32",
            "--set",
            f"manifest={manifest}",
            "--set",
            "steps=3",
            "--set",
            "batch_size=4",
            "--set",
            "num_workers=0",
            "--set",
            f"output={out}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = [(out / "rank_digests" / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    from pathssl.pretrain.trainer import state_digest

    model = build_method(PretrainConfig(**load_checkpoint(out / "checkpoints/last.pt")["config"]))
    model.load_state_dict(load_checkpoint(out / "checkpoints/last.pt")["model"])
    assert state_digest(model) == digests[0].strip()


def test_evaluation_protocol(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    from PIL import Image

    from pathssl.evaluation.tiles import evaluate_bundle, knn, linear_probe, stratified_fraction

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 8)) + 4, rng.normal(0, 1, (30, 8)) - 4])
    y = np.repeat([0, 1], 30)
    assert knn(x[::2], y[::2], x[1::2], y[1::2], k=5) == 1.0
    assert linear_probe(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    idx = stratified_fraction(y, 0.1, 0)
    assert len(idx) == 6 and set(y[idx]) == {0, 1}
    # an image folder of two visually distinct classes, read as a benchmark would be
    for cls, colour in (("pink", (220, 120, 200)), ("blue", (60, 60, 200))):
        for i in range(10):
            d = tmp_path / "data" / cls
            d.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(-20, 20, (40, 40, 3))
            Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(
                d / f"{i}.png"
            )
    res = evaluate_bundle(tmp_path / "data", tiny_bundle_dir, fractions=(0.5, 1.0))
    assert res["n_train"] == 14 and res["n_test"] == 6
    for row in res["by_fraction"].values():
        assert set(row) == {"trained", "random"}
        assert row["trained"]["knn_balanced_accuracy"] == 1.0


def test_collapse_stops_the_run_checkpointed(manifest: Path, tmp_path: Path) -> None:
    from pathssl.errors import PathsslError

    # a threshold no run can pass: the indicator is always "collapsed"
    cfg = tiny_config(manifest, tmp_path, "simclr", steps=8, collapse_threshold=10.0)
    with pytest.raises(PathsslError, match=r"collapsed .* step 5"):
        pretrain(cfg, resume=False)
    assert load_checkpoint(tmp_path / "checkpoints/last.pt")["step"] == 5
    assert "1 slides, 0 images" in (tmp_path / "data-sources.txt").read_text()
