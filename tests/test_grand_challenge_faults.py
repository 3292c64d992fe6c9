"""Faults in a Grand-Challenge job, run through the container's process.py (without Docker):
bad inputs, a socket configuration the platform would refuse, a badly packed model, a GPU given
but unusable, a bad task description, a stop at the time limit; and the local batch mode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_process_py
from gc_jobs import CASES, RESOURCES, ROOT, SLIDE, image_socket, job_case, task_value


@pytest.mark.parametrize(
    ("inputs", "files", "message"),
    [
        ("[{not json", {}, "not readable JSON"),
        ({"interface": {}}, {}, "must be a list"),
        (
            [{"interface": {"slug": "notes", "kind": "Anything", "relative_path": "n.json"}}],
            {"n.json": b"{}"},
            "no slide among the inputs (found notes (Anything)); a job needs one Image socket",
        ),
        (
            [image_socket(slug="whole-slide-image-x")],
            {"images/whole-slide-image-x/s.tif": SLIDE},
            "input sockets [whole-slide-image-x] (found whole-slide-image-x (Image)) match no "
            "interface of this algorithm",
        ),
        ([{"value": 1}], {}, "each with a socket and its slug"),
        (
            [image_socket()],
            {"images/whole-slide-image/a.tif": SLIDE, "images/whole-slide-image/b.tif": SLIDE},
            "exactly one file, found 2",
        ),
        ([image_socket()], {}, "does not exist"),
        ([image_socket(rel="../../etc")], {}, "leaves"),
        ([image_socket(rel="/etc")], {}, "leaves"),
        ([image_socket()], {"images/whole-slide-image/x.tif": b"not a slide"}, "not a format"),
        ([image_socket()], {"images/whole-slide-image/x.tif": b""}, "empty"),
    ],
    ids=[
        "malformed",
        "not-a-list",
        "no-slide",
        "unknown-sockets",
        "no-socket",
        "two-files",
        "missing-folder",
        "escapes-dotdot",
        "escapes-absolute",
        "not-a-slide",
        "zero-bytes",
    ],
)
def test_bad_inputs_one_line_error_nothing_written(
    tmp_path: Path, inputs: object, files: dict, message: str
) -> None:
    case = job_case(tmp_path, inputs, files)
    out = tmp_path / "output"
    out.mkdir()
    proc = run_process_py(case, out)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pathssl: error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def _config(tmp_path: Path, edit) -> Path:
    raw = json.loads(RESOURCES.read_text())
    edit(raw)
    path = tmp_path / "sockets.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: r["interfaces"][0]["outputs"].update({"tissue-mask": "tissue_mask"}),
            "socket tissue-mask is both an input and an output",
        ),
        (
            lambda r: r["sockets"]["pathssl-preview"].update(
                relative_path="image-neural-representation.json"
            ),
            "share image-neural-representation.json",
        ),
        (
            lambda r: r["interfaces"][1]["inputs"].pop("tissue-mask"),
            "two interfaces take the inputs ['whole-slide-image']",
        ),
        (
            lambda r: r["sockets"]["pathssl-feature-map"].update(relative_path="feature-map"),
            "image sockets live under images/",
        ),
        (lambda r: r["sockets"].pop("tissue-mask"), "socket tissue-mask is used but not defined"),
    ],
    ids=["input-and-output", "shared-path", "same-inputs", "image-path", "undefined"],
)
def test_socket_configuration_the_platform_would_refuse(tmp_path: Path, edit, message) -> None:
    case = job_case(tmp_path, [image_socket()], {"images/whole-slide-image/s.tif": SLIDE})
    proc = run_process_py(case, tmp_path / "out", "--sockets", str(_config(tmp_path, edit)))
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "out").exists()


def test_badly_packed_model_tarball_is_refused(tmp_path: Path) -> None:
    from pathssl.encoder.bundle import check_model_tarball
    from pathssl.errors import ModelBundleError

    nested = tmp_path / "opt-ml-model"
    shutil.copytree(ROOT / "model", nested / "model")
    with pytest.raises(ModelBundleError, match=r"found model/config\.json: pack the tarball"):
        check_model_tarball(nested)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelBundleError, match=r"holds files but no config\.json"):
        check_model_tarball(tmp_path / "junk")
    check_model_tarball(ROOT / "model")  # a real bundle passes


def _fake_gpu(tmp_path: Path, driver: str | None) -> tuple[Path, Path]:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidia0").touch()
    (dev / "nvidiactl").touch()
    proc = tmp_path / "version"
    if driver:
        proc.write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Tue Jan 1\n")
    return dev, proc


def test_gpu_given_but_unusable_fails_fast(tmp_path: Path) -> None:
    from pathssl.grand_challenge.gpu_check import GpuUnusableError, check_gpu_usable

    dev, proc = _fake_gpu(tmp_path, "535.183.01")
    with pytest.raises(GpuUnusableError) as info:
        check_gpu_usable(False, lambda: False, "13.0", dev, proc)
    line = str(info.value)
    assert "NVIDIA driver 535.183.01" in line and "CUDA 13.0" in line and ">= 580" in line
    assert "--allow-cpu" in line and "\n" not in line
    assert check_gpu_usable(True, lambda: False, "13.0", dev, proc).startswith("WARNING")
    assert "usable" in check_gpu_usable(False, lambda: True, "12.8", dev, proc)
    empty = tmp_path / "nodev"
    empty.mkdir()
    assert "no GPU given" in check_gpu_usable(False, lambda: False, "12.8", empty, proc)


def test_local_batch_mode(tmp_path: Path, cmu_slide: Path) -> None:
    inputs = tmp_path / "slides"
    inputs.mkdir()
    shutil.copy(cmu_slide, inputs / "good.svs")
    (inputs / "broken.svs").write_bytes(b"\x00" * 100)
    proc = run_process_py(inputs, tmp_path / "out", "--batch-size", "32")
    assert proc.returncode == 1
    assert "1 embedded, 0 reused (same slide, options and model), 1 failed" in proc.stdout
    assert (tmp_path / "out" / "good" / "image-neural-representation.json").is_file()
    assert not (tmp_path / "out" / "broken").exists()
    again = run_process_py(inputs, tmp_path / "out")
    assert "0 embedded, 1 reused (same slide, options and model), 1 failed" in again.stdout


def test_bad_task_description_is_one_line(tmp_path: Path) -> None:
    case = job_case(
        tmp_path,
        [image_socket(), task_value("survival")],
        {"images/whole-slide-image/s.tif": SLIDE},
    )
    out = tmp_path / "output"
    out.mkdir()
    proc = run_process_py(case, out)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "task_type 'survival' is none of classification, regression, detection" in last
    assert list(out.iterdir()) == []


def test_sigterm_one_line_nothing_left_in_output(tmp_path: Path) -> None:
    """A job stopped at its time limit: exit 143, one stderr line naming the slide and how far
    it got, and /output empty (no work folder, no scratch file)."""
    import os
    import signal
    import time

    out = tmp_path / "output"
    out.mkdir()
    cmd = [sys.executable, str(ROOT / "process.py"), "--input", str(CASES / "wsi")]
    proc = subprocess.Popen(
        [*cmd, "--output", str(out), "--batch-size", "1", "--engine", "pytorch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        scratch = list(out.glob(".pathssl-work-*/.features.scratch-*"))
        if scratch and scratch[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be stopped"
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("pathssl: error: stopped by SIGTERM")
    assert "d25c7a12-757b-48bc-b152-f2e645c709f3.tif" in lines[0]
    assert re.search(r": \d+ of 55 tiles embedded; no output written$", lines[0]), lines[0]
    assert list(out.iterdir()) == []
