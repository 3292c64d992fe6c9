"""The one training loop (`pathssl.training`): its exact-resume contract for a toy step, the
tile-encoder step and the slide-SSL step; the one `--set` parser; checkpoints; ranks."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from test_pretrain import tiny_config
from torch import nn

from pathssl.errors import PathsslError
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.data import sample_generator
from pathssl.pretrain.step import TileStep
from pathssl.pretrain.trainer import loop_settings
from pathssl.slide_ssl.train import SlideSSLConfig, SlideStep
from pathssl.training.checkpoint import load_checkpoint, save_atomic
from pathssl.training.distributed import DistEnv, init_distributed
from pathssl.training.loop import LoopSettings, train
from pathssl.training.overrides import build_config
from pathssl.training.schedules import set_hyperparameters, warmup_cosine
from pathssl.training.step import StepOutput, TrainStep

ENV = DistEnv()  # one process on the CPU


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: threads only add contention (tenfold slower on a shared, busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_identical(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Equal bit for bit, through dicts, lists and tensors."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=where)
    else:
        assert a == b, where


def log_rows(run: Path, skip: tuple[str, ...] = ("images_per_s",)) -> list[dict[str, str]]:
    """log.csv without its timing column (which no two runs share)."""
    with open(run / "log.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in skip} for r in csv.DictReader(fh)]


def whole_and_split(make_step, settings: LoopSettings, splits: list[int]) -> tuple[Path, Path]:
    """One uninterrupted run, and one stopped after each of `splits` steps then resumed."""
    whole = settings.output / "whole"
    train(make_step(whole), _at(settings, whole), ENV, resume=False)
    split = settings.output / "split"
    for i, k in enumerate(splits):
        reached = train(
            make_step(split), _at(settings, split), ENV, resume=i > 0, stop_after_steps=k
        )
        assert reached == sum(splits[: i + 1])
        assert load_checkpoint(split / "checkpoints/last.pt")["step"] == reached
    train(make_step(split), _at(settings, split), ENV, resume=True)
    return whole, split


def _at(settings: LoopSettings, out: Path) -> LoopSettings:
    from dataclasses import replace

    return replace(settings, output=out)


def assert_same_runs(whole: Path, split: Path, steps: int) -> None:
    a = load_checkpoint(whole / "checkpoints/last.pt")
    b = load_checkpoint(split / "checkpoints/last.pt")
    assert a["step"] == b["step"] == steps
    for state in (a, b):  # the two runs' only difference: their folders
        state["config"].pop("output", None)
    assert_identical(a, b)  # model, optimiser, scaler, RNG states, step, config
    final = load_checkpoint(whole / f"checkpoints/step_{steps:07d}.pt")
    final["config"].pop("output", None)
    assert_identical(a, final)
    assert log_rows(whole) == log_rows(split) and len(log_rows(whole)) == steps


class ToyStep(TrainStep):
    """A small regression with dropout: it draws from the global RNG every step, so its
    resume is exact only if the loop restores the RNG state."""

    log_fields = ("step", "loss", "lr", "weight_decay")

    def __init__(self, steps: int) -> None:
        torch.manual_seed(0)
        self.steps = steps
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 1))
        weights = [p for p in self.model.parameters() if p.ndim > 1]
        biases = [p for p in self.model.parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW(
            [{"params": weights}, {"params": biases, "weight_decay": 0.0, "no_wd": True}]
        )

    def record(self) -> dict[str, Any]:
        return {"config": {"steps": self.steps}}

    def batches(self, start: int, end: int):
        for step in range(start, end):
            x = torch.randn(16, 8, generator=sample_generator(0, step))
            yield x, x.sum(1, keepdim=True)

    def schedule(self, step: int) -> dict[str, float]:
        return {"lr": warmup_cosine(step, self.steps, 0.01, 1e-4, 2), "weight_decay": 0.05}

    def forward(self, net: nn.Module, batch, step: int) -> StepOutput:
        x, y = batch
        return StepOutput(nn.functional.mse_loss(net(x), y), images=len(x))


def test_loop_resumes_exactly_with_rng_dependent_steps(tmp_path: Path) -> None:
    settings = LoopSettings(output=tmp_path, steps=7, seed=0, checkpoint_every=3, log_every=1)
    whole, split = whole_and_split(lambda out: ToyStep(7), settings, [2, 3])
    assert_same_runs(whole, split, 7)
    assert (whole / "log.csv").read_text() == (split / "log.csv").read_text()


def test_no_wd_groups_keep_zero_weight_decay() -> None:
    step = ToyStep(3)
    set_hyperparameters(step.optimizer, {"lr": 0.5, "weight_decay": 0.2})
    groups = step.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.5, 0.5]
    assert [g["weight_decay"] for g in groups] == [0.2, 0.0]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "slides.csv"
    path.write_text(f"path,stain,mpp\n{cmu_slide},H&E,\n")
    return path


def test_tile_step_resumes_exactly(manifest: Path, tmp_path: Path) -> None:
    # BYOL: an EMA teacher updated after every step, on a momentum schedule
    cfg = tiny_config(manifest, tmp_path, "byol", steps=5, batch_size=4, checkpoint_every=2)
    settings = loop_settings(cfg)

    def make(out: Path) -> TileStep:
        return TileStep(PretrainConfig(**{**cfg.to_dict(), "output": str(out)}), ENV)

    whole, split = whole_and_split(make, settings, [3])
    assert_same_runs(whole, split, 5)
    assert list(log_rows(whole, skip=())[0]) == list(TileStep.log_fields)


def write_embedded_slides(root: Path, n_slides: int = 6, dim: int = 8) -> Path:
    """Embedded slides as `pathssl embed` writes them (features.h5 with augmented copies)."""
    rng = np.random.default_rng(0)
    for s in range(n_slides):
        rc = np.unique(rng.integers(0, 9, (50, 2)), axis=0)
        feats = rng.normal(size=(len(rc), dim)).astype(np.float32)
        folder = root / f"slide{s}"
        folder.mkdir(parents=True)
        with h5py.File(folder / "features.h5", "w") as h5:
            h5["features"] = feats
            h5["coords"] = rc[:, ::-1] * 224  # (x, y) in level-0 pixels
            h5["augmented_features"] = feats + rng.normal(0, 0.1, (2, *feats.shape))
            h5.attrs["patch_size_level0"] = 224
    return root


def test_slide_step_resumes_exactly(tmp_path: Path) -> None:
    embeddings = write_embedded_slides(tmp_path / "emb")
    cfg = SlideSSLConfig(
        embeddings=str(embeddings),
        output=str(tmp_path),
        width=16,
        out_dim=16,
        proj_dim=8,
        tiles_per_view=24,
        batch_size=4,
        steps=5,
        warmup_steps=2,
        checkpoint_every=2,
        log_every=1,
        temperature=0.1,
    )

    def make(out: Path) -> SlideStep:
        return SlideStep(SlideSSLConfig(**{**cfg.__dict__, "output": str(out)}), ENV)

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # as train_slide_encoder does
    try:
        whole, split = whole_and_split(make, cfg.loop_settings(), [3])
    finally:
        torch.use_deterministic_algorithms(previous)
    assert_same_runs(whole, split, 5)
    assert (whole / "log.csv").read_text() == (split / "log.csv").read_text()
    assert (whole / "log.csv").read_text().startswith("step,loss,lr\n")


def test_set_values_are_yaml_typed(tmp_path: Path) -> None:
    path = tmp_path / "dino.yaml"
    path.write_text("method: dino\nsteps: 100\nmethod_kwargs: {n_local: 4}\n")
    overrides = [
        "steps=50",
        "lr=1e-3",  # YAML 1.1 reads this as a string; a float field takes it as a number
        "grad_clip=3",
        "amp=false",
        "image_dirs=[]",
        "manifest=null",
        "target_mpps=[0.5, 1.0]",
        "method_kwargs.local_px=16",
        "output=2024",
    ]
    cfg = build_config(PretrainConfig, path=path, overrides=overrides)
    assert cfg.method == "dino" and cfg.steps == 50 and type(cfg.steps) is int
    assert cfg.lr == 1e-3 and type(cfg.grad_clip) is float and cfg.amp is False
    assert cfg.image_dirs == [] and cfg.manifest is None and cfg.target_mpps == [0.5, 1.0]
    assert cfg.method_kwargs == {"n_local": 4, "local_px": 16} and cfg.output == "2024"
    assert PretrainConfig.from_yaml(path, overrides) == cfg
    slide = build_config(SlideSSLConfig, base={"output": "o"}, overrides=["tiles_per_view=64"])
    assert slide.tiles_per_view == 64 and slide.output == "o"


def test_set_errors_are_one_line_and_name_the_fix(tmp_path: Path) -> None:
    def error(*args: Any, **kw: Any) -> str:
        with pytest.raises(PathsslError) as info:
            build_config(*args, **kw)
        assert "\n" not in str(info.value)
        return str(info.value)

    msg = error(PretrainConfig, overrides=["stepz=5"])
    assert "unknown config keys ['stepz']" in msg and "'steps'" in msg and "'log_every'" in msg
    msg = error(SlideSSLConfig, overrides=["tiles=5"])
    assert "['tiles']" in msg and "'tiles_per_view'" in msg
    assert "steps='many' is not an integer" in error(PretrainConfig, overrides=["steps=many"])
    assert "lr=True is not a number" in error(PretrainConfig, overrides=["lr=yes"])
    assert "expected key=value" in error(PretrainConfig, overrides=["steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    assert error(PretrainConfig, path=bad).startswith(f"{bad}: cannot read config")


def test_environment_and_checkpoint_errors(tmp_path: Path) -> None:
    env = init_distributed({})
    assert (env.rank, env.world, env.is_main, env.distributed) == (0, 1, True, False)
    save_atomic(tmp_path / "ok.pt", {"step": 3, "w": torch.ones(2)})
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 3
    assert not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PathsslError, match=r"bad\.pt: not a readable pathssl checkpoint") as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)
