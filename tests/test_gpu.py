"""The CUDA path on a real GPU: embedding with autocast, loader workers with pinned memory,
torch.compile, the container's process.py, pretraining with mixed precision, and a one-process
NCCL torchrun. Marked `gpu` and skipped without CUDA (CI has none): run them, and the GPU
benchmark, with `bash bench/gpu_report.sh` on a GPU machine.

Tolerances against fp32 on the CPU: bf16/fp16 autocast rounds differently, so features are
compared by cosine similarity (>= 0.999 per tile) and by the compare module's GPU tolerance
(rtol = atol = 5e-2), as test.sh does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import run_process_py

from pathssl.embed import EmbedOptions, embed_slide
from pathssl.encoder.bundle import load_bundle
from pathssl.grand_challenge.compare import compare_outputs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (bash bench/gpu_report.sh)"
    ),
]
GPU = EmbedOptions(device="cuda", engine="pytorch", max_tiles=64)


def _features(out: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(out / "features.h5") as h5:
        return h5["features"][:], h5["coords"][:]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def cpu_reference(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    out = tmp_path_factory.mktemp("cpu") / "cmu"
    embed_slide(cmu_slide, out, load_bundle(ROOT / "model"), replace(GPU, device="cpu"))
    return out


@pytest.mark.parametrize(
    "options",
    [GPU, replace(GPU, num_workers=2), replace(GPU, compile=True)],
    ids=["autocast", "workers-pinned-memory", "compile"],
)
def test_gpu_embedding_matches_cpu_fp32(
    cpu_reference: Path, cmu_slide: Path, tmp_path: Path, options: EmbedOptions
) -> None:
    record = embed_slide(cmu_slide, tmp_path / "gpu", load_bundle(ROOT / "model"), options)
    assert record["device"].startswith("cuda")
    gpu_feats, gpu_coords = _features(tmp_path / "gpu")
    cpu_feats, cpu_coords = _features(cpu_reference)
    np.testing.assert_array_equal(gpu_coords, cpu_coords)
    assert np.isfinite(gpu_feats).all()
    assert _cosines(gpu_feats, cpu_feats).min() >= 0.999


def test_process_py_end_to_end_on_gpu(tmp_path: Path) -> None:
    out = tmp_path / "output"
    done = run_process_py(ROOT / "test" / "input" / "wsi", out)
    assert done.returncode == 0, done.stderr
    assert "GPU given" in done.stdout or "device cuda" in done.stdout
    record = json.loads((out / "pathssl-run-record.json").read_text())
    assert record["device"].startswith("cuda") and record["engine"].startswith("pytorch")
    expected = ROOT / "test/expected_output/wsi"
    assert compare_outputs(expected, out, rtol=5e-2, atol=5e-2, min_cosine=0.995) == []


@pytest.mark.parametrize("method", ["simclr", "dino", "byol", "moco", "barlow"])
def test_pretraining_step_with_mixed_precision(method: str, tmp_path: Path, cmu_slide) -> None:
    from test_pretrain import tiny_config

    from pathssl.pretrain.trainer import load_checkpoint, pretrain

    manifest = tmp_path / "slides.csv"
    manifest.write_text(f"path,stain,mpp\n{cmu_slide},H&E,\n")
    cfg = replace(tiny_config(manifest, tmp_path / "run", method), steps=2, checkpoint_every=2)
    assert cfg.amp
    run = pretrain(cfg, resume=False)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2
    log = (run / "log.csv").read_text().lower()
    assert log.count("\n") >= 2 and "nan" not in log and "inf" not in log


def test_one_process_nccl_torchrun(tmp_path: Path, cmu_slide: Path) -> None:
    manifest = tmp_path / "slides.csv"
    manifest.write_text(f"path,stain,mpp\n{cmu_slide},H&E,\n")
    done = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
            "-m", "pathssl.cli", "pretrain",
            "--config", str(ROOT / "configs/pretrain/simclr.yaml"),
            "--set", f"manifest={manifest}", "--set", "architecture=test_resnet",
            "--set", "input_px=32", "--set", "batch_size=8", "--set", "steps=2",
            "--set", "num_workers=0", "--set", f"output={tmp_path / 'run'}",
            "--set", "image_dirs=[]",  # the config's ../shared images are absent on a GPU host
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
