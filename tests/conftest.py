"""Shared fixtures: the committed CC0 slide, the optional shared slides, tiny model bundles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CMU_SLIDE = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"
SHARED_WSI = Path(os.environ.get("PATHSSL_SHARED_DATA", ROOT.parent / "shared" / "data")) / "wsi"


def run_process_py(input_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """The container's entry point, process.py, as a job runs it; output captured."""
    io = ["--input", str(input_dir), "--output", str(output_dir)]
    return subprocess.run(
        [sys.executable, str(ROOT / "process.py"), *io, *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def make_images(folder: Path, n: int, size: int, colour: tuple[int, int, int]) -> None:
    """n noisy RGB squares of one colour (seeded by n): a class of an image-folder dataset."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        noise = rng.integers(-30, 30, (size, size, 3))
        Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(
            folder / f"{i}.png"
        )


def shared_slide(name: str) -> Path:
    path = SHARED_WSI / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only on development and CI machines)")
    return path


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    return CMU_SLIDE


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained timm model: 32 px tiles at 2 um/px, so CMU gives ~90 tiles."""
    from pathssl.encoder.export import random_bundle

    out = tmp_path_factory.mktemp("tiny_bundle")
    random_bundle(out, "test_resnet", input_size_px=32, target_mpp=2.0, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundle_dir: Path):
    from pathssl.encoder.bundle import load_bundle

    return load_bundle(tiny_bundle_dir)


@pytest.fixture(autouse=True)
def _no_stale_log_handlers():
    """`pathssl.cli.main` configures logging on the stderr of the test that first calls it;
    captured streams close after each test, so later log lines would fail ("Logging error")
    into the next test's stderr. Handlers a test adds are removed after it."""
    import logging

    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in root.handlers[:]:
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
