"""Reduced precision is accepted per model, from measurements, never assumed.

`pathssl check-precision` (evaluation/precision.py) embeds the visible benchmark's tiles with
the OpenVINO engine in f32 and in the reduced precision, and records in the bundle's
precision-check.json how far the features moved and how much the linear probe changed.
`--engine openvino-bf16` runs only where that record, made for these weights, accepted it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pathssl.encoder.bundle import EncoderBundle
from pathssl.errors import PathsslError

CHECK_NAME = "precision-check.json"
MIN_COSINE = 0.995  # every tile's feature vector, against its f32 vector
MAX_PROBE_CHANGE = 0.005  # balanced accuracy of the linear probe, mean over the tasks


def verdict(min_cosine: float, probe_change: float) -> tuple[bool, str]:
    """Accepted or not, and the measured reason in words."""
    measured = f"tile features at cosine >= {min_cosine:.4f} of f32, probe {probe_change:+.4f}"
    if min_cosine < MIN_COSINE:
        return False, f"{measured}: features below the tolerance (cosine {MIN_COSINE})"
    if abs(probe_change) > MAX_PROBE_CHANGE:
        return False, f"{measured}: the probe moved more than {MAX_PROBE_CHANGE}"
    return True, measured


def load_checks(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / CHECK_NAME
    if not path.is_file():
        return {}
    try:
        checks = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PathsslError(
            f"{path}: unreadable ({exc}); run `pathssl check-precision` again"
        ) from exc
    return checks if isinstance(checks, dict) else {}


def require_accepted(bundle: EncoderBundle, precision: str) -> None:
    """Nothing when a check of these weights accepted `precision`; else one line: why not."""
    record = load_checks(bundle.path).get(precision)
    name, engine = bundle.config.name, f"--engine openvino-{precision}"
    if not record or record.get("weights_sha256") != bundle.weights_sha256:
        raise PathsslError(
            f"{engine}: {name} has no {precision} check for these weights in "
            f"{Path(bundle.path) / CHECK_NAME}; run `pathssl check-precision --model "
            f"{bundle.path} --precision {precision}` (it measures the features and a linear "
            "probe against f32) or use --engine openvino"
        )
    if not record.get("accepted"):
        raise PathsslError(f"{engine}: refused for {name}: {record.get('why')}")


def write_check(bundle_dir: Path, precision: str, record: dict[str, Any]) -> Path:
    """Add or replace one precision's record, written atomically."""
    path = Path(bundle_dir) / CHECK_NAME
    checks = {**load_checks(bundle_dir), precision: record}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{CHECK_NAME}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(checks, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise PathsslError(
            f"{path}: cannot be written ({exc.strerror or exc}); copy the bundle to a "
            "writable folder and check that copy"
        ) from exc
    return path
