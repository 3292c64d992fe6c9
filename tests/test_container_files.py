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
SHIM = ROOT / "tools" / "sagemaker-shim"


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
        [_tool("hadolint"), "--failure-threshold", "error", "Dockerfile", SHIM / "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shell_scripts() -> None:
    scripts = ["build.sh", "export.sh", "test.sh", ".ci/run", "tools/run-under-sagemaker-shim.sh"]
    for script in scripts:
        assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0
    proc = subprocess.run([_tool("shellcheck"), *scripts], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_shim_image_is_patched_as_the_platform_patches() -> None:
    """tools/sagemaker-shim/Dockerfile does what grand-challenge.org's _mutate_container_image
    and _get_shim_env_vars do: the shim at /sagemaker-shim (root, 0500) as entrypoint, no cmd,
    user 0, /input 0755, /output and /tmp 0777, the original entrypoint, cmd and user in env
    vars; the shim is the platform's pinned release (dockerfiles/web-base/Dockerfile: 0.6.1)."""
    shim = (SHIM / "Dockerfile").read_text()
    stage = shim[shim.index("AS shim") : shim.index("AS s3")]
    assert 'ENTRYPOINT ["/sagemaker-shim"]' in stage and "CMD []" in stage
    assert "USER 0:0" in stage and "chmod 0500 /sagemaker-shim" in stage
    assert "chmod 0755 /input" in stage and "chmod 0777 /output /tmp" in stage
    for var in ("CMD_B64J", "ENTRYPOINT_B64J", "USER"):
        assert f"GRAND_CHALLENGE_COMPONENT_{var}=" in stage
    pins = (SHIM / "requirements-shim.txt").read_text()
    assert re.search(r"^sagemaker-shim==0\.6\.1$", pins, re.M)
    script = (ROOT / "tools" / "run-under-sagemaker-shim.sh").read_text()
    assert "sagemaker-shim-0.6.1-Linux-x86_64" in script and "invoke --file" in script
