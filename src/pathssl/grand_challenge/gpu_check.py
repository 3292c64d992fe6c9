"""GPU or fail fast: a container given a GPU that PyTorch cannot use must not crawl on the CPU
to the platform's time limit.

A GPU is "given" when the NVIDIA container runtime put device nodes in /dev (the image's
NVIDIA_VISIBLE_DEVICES variable alone says nothing: base images set it). CUDA then fails
mostly because the host driver is older than the CUDA build of PyTorch needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pathssl.errors import PathsslError

# Oldest Linux driver that runs a CUDA major version (NVIDIA's minor-version compatibility).
MIN_DRIVER_FOR_CUDA = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


class GpuUnusableError(PathsslError):
    pass


def gpu_device_nodes(dev: Path = Path("/dev")) -> list[str]:
    return sorted(p.name for p in dev.glob("nvidia[0-9]*"))


def driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel module's version, as the container sees it."""
    try:
        text = proc_file.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \w+)?\s+([\d.]+)", text)
    return match.group(1) if match else None


def check_gpu_usable(
    allow_cpu: bool,
    cuda_available: Callable[[], bool],
    cuda_build: str | None,
    dev: Path = Path("/dev"),
    proc_file: Path = Path("/proc/driver/nvidia/version"),
) -> str:
    """One line on the device situation; raises when a GPU is given but unusable and the CPU
    was not allowed."""
    nodes = gpu_device_nodes(dev)
    if not nodes:
        return "no GPU given to the container: running on the CPU"
    if cuda_available():
        return f"GPU given ({', '.join(nodes)}) and usable"
    driver = driver_version(proc_file) or "unknown"
    major = (cuda_build or "?").split(".")[0]
    need = MIN_DRIVER_FOR_CUDA.get(major, "a newer one")
    message = (
        f"a GPU is given ({', '.join(nodes)}) but PyTorch cannot use it: NVIDIA driver {driver}, "
        f"PyTorch built for CUDA {cuda_build} (needs driver >= {need}); rebuild on a base image "
        "for an older CUDA (PYTORCH_IMAGE=... ./build.sh) or pass --allow-cpu to run slowly"
    )
    if not allow_cpu:
        raise GpuUnusableError(message)
    return f"WARNING: {message}; running on the CPU (--allow-cpu)"
