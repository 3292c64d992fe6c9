"""The container's own files: the Dockerfile agrees with requirements.txt and the hashed lock,
.dockerignore keeps what must not travel out, hadolint and shellcheck find no errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_and_requirements_agree() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    base = re.search(r"ARG PYTORCH_IMAGE=pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)", dockerfile)
    assert base and base.group(1) == pins["torch"]
    assert base.group(2) == "12"  # drivers >= 525 (README, "GPU"); CUDA 13 needs >= 580
    assert "--require-hashes --no-deps -r /opt/app/requirements-image.lock" in dockerfile
    assert "pip check" in dockerfile
    lock = (ROOT / "requirements-image.lock").read_text()
    locked = dict(
        re.findall(r"^([a-z0-9-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", lock, re.M)
    )
    assert len(locked) == lock.count("--hash=sha256:")  # every package hashed
    for name, version in pins.items():  # every direct pin, at its version
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key not in ("torch", "torchvision"):
            assert locked.get(key) == version, name
    assert "torch" not in locked and "evalutils" not in pins
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user and int(user.group(1)) > 0  # numeric, non-root
    assert "--chown" not in dockerfile and "chmod -R a-w" in dockerfile  # code read-only
    assert 'ENTRYPOINT ["python", "process.py"]' in dockerfile
    for needed in ("src", "model", "resources", "process.py"):
        assert re.search(rf"^COPY .*\b{needed}\b", dockerfile, re.M)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and "!.git" not in ignore  # context: only what is copied


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.skip(f"{name} not installed (pip install -r requirements-dev.txt)")
    return path


def test_hadolint_no_errors() -> None:
    proc = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "error", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shell_scripts() -> None:
    scripts = ["build.sh", "export.sh", "test.sh", ".ci/run"]
    for script in scripts:
        assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0
    proc = subprocess.run([_tool("shellcheck"), *scripts], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
