"""pathssl's Grand-Challenge output read by the UNICORN challenge's own evaluation code.

unicorn-eval pins torch 2.0.1 and numpy 1.26, so it gets its own virtual environment (built
once under .cache/, or PATHSSL_UNICORN_PYTHON names one); this project's torch is reached
through a .pth file. The check runs unicorn-eval's loading (`process`, `read_inputs`), its
label cutting and its pathology segmentation adaptor on a real process.py output, with labels
drawn on each tile's true extent on the slide.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import run_process_py

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS = ROOT / "tests" / "consumers"
VENV = ROOT / ".cache" / "unicorn-eval-venv"


def _unicorn_python() -> Path:
    given = os.environ.get("PATHSSL_UNICORN_PYTHON")
    if given:
        return Path(given)
    python = VENV / "bin" / "python"
    requirements = CONSUMERS / "unicorn-eval-requirements.txt"
    stamp = VENV / "requirements.txt"
    if stamp.is_file() and stamp.read_text() == requirements.read_text():
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)  # a half-built environment only takes disk
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            pytest.skip(f"cannot build unicorn-eval's environment (PyPI needed): {lines[-1]}")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # After its own packages: their numpy wins, this project's torch is found.
    Path(site, "zz-pathssl.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    stamp.write_text(requirements.read_text())
    return python


def test_unicorn_eval_reads_patch_meta_as_the_tiles_true_extent(tmp_path: Path) -> None:
    python = _unicorn_python()
    out = tmp_path / "output"
    job = run_process_py(ROOT / "test" / "input" / "wsi", out)
    assert job.returncode == 0, job.stderr
    check = subprocess.run(
        [str(python), str(CONSUMERS / "unicorn_eval_check.py"), str(out), str(tmp_path / "eval")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    seen = json.loads(check.stdout.strip().splitlines()[-1])
    record = json.loads((out / "pathssl-run-record.json").read_text())
    width, height = record["slide"]["dimensions_px"]
    mpp = record["resolution"]["mpp"]
    extent = seen["true_extent_px"]
    assert extent == 224  # 112 px at 0.998 um/px on a 0.499 um/px slide
    # Each patch, as unicorn-eval cuts it, is exactly the tile's extent: a patch-size in other
    # units would cut less (or more) than the tile, or other tiles' labels.
    assert seen["patch_size"] == [extent, extent]
    assert seen["patches"] == seen["patches_covering_only_their_tile"] == record["tiling"]["tiles"]
    # Predictions are stitched into an image of the slide's level-0 size: the labels' size.
    assert seen["image_size"] == [width, height]
    assert seen["label_shape"] == seen["prediction_shape"] == [height, width]
    assert seen["patch_spacing"] == seen["image_spacing"] == [mpp, mpp]  # microns, level 0
    assert seen["feature_grid_resolution"] == [1, 1]  # one vector per patch
    assert seen["embeddings_shape"] == [record["tiling"]["tiles"], 512]
