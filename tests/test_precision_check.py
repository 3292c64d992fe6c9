"""BF16 on the CPU (issue 26): accepted per model from measurements against f32 (features and
a linear probe), refused with the measured difference otherwise, never run unchecked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathssl.cli import main
from pathssl.encoder.bundle import load_bundle
from pathssl.encoder.precision_check import (
    CHECK_NAME,
    MAX_PROBE_CHANGE,
    MIN_COSINE,
    require_accepted,
    verdict,
    write_check,
)
from pathssl.errors import PathsslError

ROOT = Path(__file__).resolve().parents[1]
openvino = pytest.importorskip("openvino", reason="pip install -r requirements.txt")


def _has_bf16() -> bool:
    from pathssl.encoder.openvino_engine import cpu_has_bf16

    return cpu_has_bf16()


def test_verdict_takes_both_tolerances() -> None:
    assert verdict(0.999, 0.001)[0]
    assert verdict(MIN_COSINE, -MAX_PROBE_CHANGE)[0]
    ok, why = verdict(0.98, 0.0)
    assert not ok and "0.9800" in why and "features" in why
    ok, why = verdict(0.999, -0.02)
    assert not ok and "-0.0200" in why and "probe" in why


@pytest.fixture()
def bundle_copy(tmp_path: Path):
    shutil.copytree(ROOT / "model", tmp_path / "m", ignore=shutil.ignore_patterns(CHECK_NAME))
    return load_bundle(tmp_path / "m")


def test_unchecked_refused_and_other_weights_refused(bundle_copy) -> None:
    with pytest.raises(PathsslError, match=r"check-precision --model .* --precision bf16"):
        require_accepted(bundle_copy, "bf16")
    write_check(bundle_copy.path, "bf16", {"weights_sha256": "0" * 64, "accepted": True})
    with pytest.raises(PathsslError, match="no bf16 check for these weights"):
        require_accepted(bundle_copy, "bf16")
    why = "tile features at cosine >= 0.9700 of f32, probe -0.0100: features below"
    record = {"weights_sha256": bundle_copy.weights_sha256, "accepted": False, "why": why}
    write_check(bundle_copy.path, "bf16", record)
    with pytest.raises(PathsslError, match=r"refused for .*cosine >= 0\.9700"):
        require_accepted(bundle_copy, "bf16")
    record["accepted"] = True
    write_check(bundle_copy.path, "bf16", record)
    require_accepted(bundle_copy, "bf16")  # no error
    assert json.loads((Path(bundle_copy.path) / CHECK_NAME).read_text())["bf16"] == record


def test_embed_refuses_an_unchecked_model_in_one_line(bundle_copy, cmu_slide, tmp_path, capsys):
    code = main(
        ["embed", str(cmu_slide), "--output", str(tmp_path / "o"), "--model",
         str(bundle_copy.path), "--engine", "openvino-bf16"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert ("no bf16 check" in err) or ("no BF16 instructions" in err)
    assert not (tmp_path / "o" / cmu_slide.stem / "features.h5").exists()


def _tiny_task(tmp_path: Path):
    from pathssl.evaluation.visible_tasks import make_task

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        label = "a" if i % 2 else "b"
        base = np.array([200, 120, 170]) if label == "a" else np.array([120, 80, 160])
        pixels = np.clip(base + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        rows.append((path, label, f"g{i}"))
    return make_task("tiny", rows, None)


@pytest.mark.skipif(not _has_bf16(), reason="this CPU has no BF16 instructions")
def test_a_real_check_measures_bf16_and_gates_embed(bundle_copy, cmu_slide, tmp_path) -> None:
    """The check itself on a tiny task: real BF16 and f32 features, a real probe; then embed
    runs with the record it wrote, and its features agree with f32's as the record says."""
    from pathssl.evaluation.precision import check_precision

    record = check_precision(bundle_copy.path, "bf16", [_tiny_task(tmp_path)], folds=3, repeats=1)
    feats = record["features"]
    assert record["weights_sha256"] == bundle_copy.weights_sha256
    assert feats["tiles"] == 12 and 0.9 < feats["min_cosine"] <= feats["median_cosine"] <= 1.0
    assert feats["min_cosine"] < 1.0  # BF16 really ran: not f32 twice
    assert set(record["probe"]["balanced_accuracy"]) == {"bf16", "f32"}
    assert record["accepted"] == verdict(feats["min_cosine"], record["probe"]["change"])[0]
    record["accepted"] = True  # the gate, whatever this tiny task measured
    write_check(bundle_copy.path, "bf16", record)
    outs = {}
    for engine in ("openvino", "openvino-bf16"):
        argv = ["embed", str(cmu_slide), "--output", str(tmp_path / engine), "--model",
                str(bundle_copy.path), "--engine", engine]  # fmt: skip
        assert main(argv) == 0
        run = json.loads((tmp_path / engine / cmu_slide.stem / "run.json").read_text())
        assert run["engine"].endswith("(CPU, bf16)" if "bf16" in engine else "(CPU, f32)")
        import h5py

        with h5py.File(tmp_path / engine / cmu_slide.stem / "features.h5") as f:
            outs[engine] = np.asarray(f["features"])
    a, b = outs["openvino-bf16"], outs["openvino"]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.98 and not np.array_equal(a, b)
