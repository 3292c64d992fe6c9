"""The container's process.py, run as Grand-Challenge runs it (without Docker), and its files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pathssl.grand_challenge.compare import compare_outputs

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "test" / "input"
EXPECTED = ROOT / "test" / "expected_output"


def process(input_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(input_dir),
            "--output",
            str(output_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gc") / "output"
    proc = process(CASE, out)
    assert proc.returncode == 0, proc.stderr
    assert "sha256" in proc.stdout and "device cpu" in proc.stdout
    return out


def test_matches_expected_output(first_run: Path) -> None:
    assert compare_outputs(EXPECTED, first_run) == []
    assert sorted(
        p.relative_to(first_run).as_posix() for p in first_run.rglob("*") if p.is_file()
    ) == [
        "image-neural-representation.json",
        "images/feature-map/feature-map.mha",
        "images/tissue-mask/tissue-mask.mha",
        "patch-neural-representation.json",
        "pathssl-run.json",
        "preview.png",
    ]


def test_second_run_agrees(first_run: Path, tmp_path: Path) -> None:
    proc = process(CASE, tmp_path / "again")
    assert proc.returncode == 0, proc.stderr
    assert compare_outputs(first_run, tmp_path / "again", rtol=0, atol=0) == []


def test_comparison_catches_differences(first_run: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(first_run, changed)
    path = changed / "image-neural-representation.json"
    data = json.loads(path.read_text())
    data[0]["features"][3] += 0.01
    path.write_text(json.dumps(data))
    (changed / "preview.png").unlink()
    problems = compare_outputs(first_run, changed)
    assert any("features[3]" in p for p in problems)
    assert any("missing ['preview.png']" in p for p in problems)


def _case(tmp_path: Path, inputs: object, files: dict[str, Path | bytes]) -> Path:
    case = tmp_path / "input"
    case.mkdir()
    (case / "inputs.json").write_text(inputs if isinstance(inputs, str) else json.dumps(inputs))
    for rel, content in files.items():
        target = case / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    return case


def _socket(slug: str = "whole-slide-image", kind: str = "Image", rel: str | None = None) -> dict:
    return {
        "interface": {
            "slug": slug,
            "kind": kind,
            "super_kind": "Image",
            "relative_path": rel or f"images/{slug}",
        },
        "value": None,
        "file": None,
        "image": {"pk": "x"},
    }


SLIDE = next((CASE / "images" / "whole-slide-image").iterdir())


@pytest.mark.parametrize(
    ("inputs", "files", "message"),
    [
        ("[{not json", {}, "not readable JSON"),
        ({"interface": {}}, {}, "must be a list"),
        ([_socket(kind="Anything", slug="notes")], {}, "expected one whole-slide image socket"),
        (
            [_socket()],
            {"images/whole-slide-image/a.tif": SLIDE, "images/whole-slide-image/b.tif": SLIDE},
            "exactly one file, found 2",
        ),
        ([_socket()], {}, "does not exist"),
        ([_socket(rel="../../etc")], {}, "leaves"),
        ([_socket(rel="/etc")], {}, "leaves"),
        ([_socket()], {"images/whole-slide-image/x.tif": b"not a slide"}, "not a format"),
        ([_socket()], {"images/whole-slide-image/x.tif": b""}, "empty"),
    ],
    ids=[
        "malformed",
        "not-a-list",
        "no-image-socket",
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
    case = _case(tmp_path, inputs, files)
    out = tmp_path / "output"
    out.mkdir()
    proc = process(case, out)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pathssl: error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_missing_resolution_socket_value_and_tissue_mask(tmp_path: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    mask = np.zeros((297, 222), np.uint8)
    mask[100:200, 50:150] = 1
    mask_path = tmp_path / "mask.mha"
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(mask_path))
    mpp_socket = {
        "interface": {
            "slug": "microns-per-pixel",
            "kind": "Float",
            "relative_path": "microns-per-pixel.json",
        },
        "value": 0.5,
    }
    inputs = [_socket(), _socket("tissue-mask", "Segmentation"), mpp_socket]
    case = _case(
        tmp_path,
        inputs,
        {"images/whole-slide-image/s.tif": SLIDE, "images/tissue-mask/m.mha": mask_path},
    )
    proc = process(case, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "out" / "pathssl-run.json").read_text())
    assert run["tissue"]["source"] == "input:m.mha"
    assert run["resolution"] == {"mpp": 0.5, "source": "override"}
    patches = json.loads((tmp_path / "out" / "patch-neural-representation.json").read_text())
    coords = [p["coordinates"] for p in patches[0]["patches"]]
    assert coords
    size = run["tiling"]["stride_level0_px"]
    for x, y in coords:  # every tile overlaps the masked box (x 500-1500, y 1000-2000) enough
        overlap_x = max(0, min(x + size, 1500) - max(x, 500))
        overlap_y = max(0, min(y + size, 2000) - max(y, 1000))
        assert overlap_x * overlap_y >= 0.2 * size * size


def test_local_batch_mode(tmp_path: Path, cmu_slide: Path) -> None:
    inputs = tmp_path / "slides"
    inputs.mkdir()
    shutil.copy(cmu_slide, inputs / "good.svs")
    (inputs / "broken.svs").write_bytes(b"\x00" * 100)
    proc = process(inputs, tmp_path / "out", "--batch-size", "32")
    assert proc.returncode == 1
    assert "1 embedded, 0 skipped (complete), 1 failed" in proc.stdout
    assert (tmp_path / "out" / "good" / "image-neural-representation.json").is_file()
    assert not (tmp_path / "out" / "broken").exists()
    again = process(inputs, tmp_path / "out")
    assert "0 embedded, 1 skipped (complete), 1 failed" in again.stdout


def test_dockerfile_and_requirements_agree() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    base = re.search(r"ARG PYTORCH_IMAGE=pytorch/pytorch:(\d+\.\d+\.\d+)-cuda", dockerfile)
    assert base and base.group(1) == pins["torch"]
    assert "pip install --no-cache-dir -r /opt/app/requirements.txt" in dockerfile
    assert "openslide-bin" in pins and "evalutils" not in pins
    assert re.search(r"^USER user$", dockerfile, re.M)
    assert 'ENTRYPOINT ["python", "process.py"]' in dockerfile
    for needed in ("src", "model", "resources", "process.py"):
        assert re.search(rf"^COPY .*\b{needed}\b", dockerfile, re.M)


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
