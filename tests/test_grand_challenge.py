"""The container's process.py, run as Grand-Challenge runs it (without Docker): cases, dispatch,
faults. Its Dockerfile and scripts: test_container_files.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process_py

from pathssl.grand_challenge.compare import compare_outputs
from pathssl.grand_challenge.run import JSON_BYTES_PER_FEATURE, PATCH_JSON_BUDGET_BYTES, tile_cap
from pathssl.grand_challenge.sockets import SocketConfig, output_roles

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "test" / "input"
EXPECTED = ROOT / "test" / "expected_output"
RESOURCES = ROOT / "resources" / "grand-challenge.json"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())
# The UNICORN pathology input slugs (unicorn-eval 3.2.0's INPUT_SLUGS_DICT) and their tasks.
UNICORN_SLIDE_SLUGS = {
    "prostate-tissue-biopsy-whole-slide-image": "slide_embedding",  # Task01
    "prostatectomy-tissue-whole-slide-image": "slide_embedding",  # Task03
    "ihc-staining-for-pd-l1": "slide_embedding",  # Task04
    "histopathology-region-of-interest-cropout": "patch_embeddings",  # Task05, 08, 09
    "he-staining": "slide_embedding",  # Task20
    "whole-slide-image": "slide_embedding",  # Hidden01-08
}
TASK_SLUG = "unicorn-task-description"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _slugs(case: Path) -> tuple[str, ...]:
    values = json.loads((case / "inputs.json").read_text())
    return tuple(sorted((v.get("socket") or v["interface"])["slug"] for v in values))


def _interface_of(case: str):
    config = SocketConfig.from_file(RESOURCES)
    return next(i for i in config.interfaces if i.key == _slugs(CASES / case))


def _task(case: str) -> dict | None:
    path = CASES / case / "unicorn-task-description.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test case, run once: case name -> /output."""
    outputs = {}
    for name in CASE_NAMES:
        out = tmp_path_factory.mktemp("gc") / name
        proc = run_process_py(CASES / name, out)
        assert proc.returncode == 0, proc.stderr
        interface = _interface_of(name)
        assert f"interface {interface.name}:" in proc.stdout and "device cpu" in proc.stdout
        assert proc.stderr == ""  # progress to stdout; stderr is for warnings and errors
        outputs[name] = out
    return outputs


def test_every_case_has_an_interface_and_an_expected_output() -> None:
    config = SocketConfig.from_file(RESOURCES)
    keys = {i.key for i in config.interfaces}
    for name in CASE_NAMES:
        assert _slugs(CASES / name) in keys, name
        assert (EXPECTED / name).is_dir(), name
    assert sorted(p.name for p in EXPECTED.iterdir()) == CASE_NAMES
    # one case per task kind the issue names, plus the two plain interfaces
    kinds = {(_task(n) or {}).get("task_type") for n in CASE_NAMES}
    assert kinds == {None, "classification", "detection", "segmentation"}
    assert any("ihc-staining-for-pd-l1" in _slugs(CASES / n) for n in CASE_NAMES)


def test_an_interface_for_every_unicorn_pathology_input_set() -> None:
    config = SocketConfig.from_file(RESOURCES)
    by_key = {i.key: i for i in config.interfaces}
    for slide, level in UNICORN_SLIDE_SLUGS.items():
        for extra in ([], ["tissue-mask"], [TASK_SLUG], ["tissue-mask", TASK_SLUG]):
            interface = by_key[tuple(sorted([slide, *extra]))]
            assert level in interface.outputs.values(), interface.name
            for slug in interface.outputs:  # UNICORN interfaces only use sockets that exist
                if slide != "whole-slide-image" or TASK_SLUG in extra:
                    assert config.sockets[slug].on_platform, (interface.name, slug)
    requested = [s for s in config.sockets.values() if not s.on_platform]
    assert sorted(s.slug for s in requested) == [
        "pathssl-detected-tissue-mask",
        "pathssl-feature-map",
        "pathssl-preview",
        "pathssl-run-record",
    ]
    assert all(s.request for s in requested)
    for s in config.sockets.values():
        if s.kind == "Segmentation":
            assert [(g["voxel_value"], g["name"]) for g in s.overlay_segments] == [
                (0, "background"),
                (1, "tissue"),
            ]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_matches_expected_output(runs: dict[str, Path], name: str) -> None:
    out = runs[name]
    assert compare_outputs(EXPECTED / name, out) == []
    config = SocketConfig.from_file(RESOURCES)
    interface = _interface_of(name)
    task = _task(name)
    roles, warning = output_roles(interface, task)
    assert warning == ""
    if task:  # only the level the task type asks for
        level = (
            "slide_embedding"
            if task["task_type"] in ("classification", "regression")
            else ("patch_embeddings")
        )
        assert roles & {"slide_embedding", "patch_embeddings"} == {level}
    expected = sorted(
        config.sockets[slug].relative_path
        + (f"/{slug}.mha" if config.sockets[slug].is_image else "")
        for slug, role in interface.outputs.items()
        if role in roles
    )
    assert _files(out) == expected  # nothing else: no work folder, no unlisted output
    record_path = out / "pathssl-run-record.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        assert str(ROOT) not in json.dumps(record) and "/work" not in json.dumps(record)
        assert record["grand_challenge"]["interface"] == interface.name
        assert record["grand_challenge"]["inputs"]["slide"] == "whole-slide-image"


@pytest.mark.parametrize(
    ("name", "mpp"),
    [("task05-roi-detection", 0.499), ("task09-roi-segmentation", 0.499)],
)
def test_roi_cropouts_read_at_their_stated_spacing(
    runs: dict[str, Path], name: str, mpp: float
) -> None:
    patches = json.loads((runs[name] / "patch-neural-representation.json").read_text())[0]
    assert patches["meta"]["image-spacing"] == pytest.approx([mpp, mpp], rel=1e-6)
    assert patches["meta"]["patch-size"] == [224, 224]  # 112 px at 0.998 um/px
    assert len(patches["patches"]) >= 4


def test_tissue_mask_interface_keeps_tiles_inside_the_mask(runs: dict[str, Path]) -> None:
    out = runs["wsi-with-tissue-mask"]
    patches = json.loads((out / "patch-neural-representation.json").read_text())[0]
    height = patches["meta"]["image-size"][1]
    size = patches["meta"]["patch-size"][0]
    ys = np.array([p["coordinates"][1] for p in patches["patches"]])
    # the test mask marks the upper half of the slide: every tile mostly inside it
    assert len(ys) > 0 and (ys + size * 0.25 <= height / 2 + 8).all()
    assert not (out / "images" / "pathssl-detected-tissue-mask").exists()


def test_second_run_agrees(runs: dict[str, Path], tmp_path: Path) -> None:
    out = runs["wsi"]
    proc = run_process_py(CASES / "wsi", tmp_path / "again")
    assert proc.returncode == 0, proc.stderr
    assert compare_outputs(out, tmp_path / "again", rtol=0, atol=0) == []


def test_tile_cap_is_an_even_deterministic_subsample(runs: dict[str, Path], tmp_path: Path) -> None:
    out = runs["wsi"]
    proc = run_process_py(CASES / "wsi", tmp_path / "capped", "--max-tiles", "10")
    assert proc.returncode == 0, proc.stderr
    assert "55 tissue tiles, 10 kept by the cap" in proc.stdout
    record = json.loads((tmp_path / "capped" / "pathssl-run-record.json").read_text())
    assert record["tiling"]["capped"] and record["tiling"]["tiles_in_tissue"] == 55
    full = [
        p["coordinates"]
        for p in json.loads((out / "patch-neural-representation.json").read_text())[0]["patches"]
    ]
    capped = json.loads((tmp_path / "capped" / "patch-neural-representation.json").read_text())
    kept = [p["coordinates"] for p in capped[0]["patches"]]
    picks = [full.index(c) for c in kept]
    assert len(kept) == 10 and picks == sorted(picks) and picks[0] == 0 and picks[-1] == 54


def test_container_tile_cap_bounds_the_patch_json() -> None:
    assert tile_cap(512) == 20_000
    for dim in (384, 768, 1024, 1536, 2560):
        cap = tile_cap(dim)
        assert cap * (dim * JSON_BYTES_PER_FEATURE + 64) <= PATCH_JSON_BUDGET_BYTES
    # the stated bytes per feature hold for the real output (shortest float32 decimals)
    patch = EXPECTED / "wsi" / "patch-neural-representation.json"
    data = json.loads(patch.read_text())[0]
    floats = sum(len(p["features"]) for p in data["patches"])
    assert patch.stat().st_size / floats < JSON_BYTES_PER_FEATURE


def test_comparison_catches_differences(runs: dict[str, Path], tmp_path: Path) -> None:
    out = runs["wsi"]
    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    path = changed / "image-neural-representation.json"
    data = json.loads(path.read_text())
    data[0]["features"][3] += 0.01
    path.write_text(json.dumps(data))
    (changed / "pathssl-preview.png").unlink()
    problems = compare_outputs(out, changed)
    assert any("features[3]" in p for p in problems)
    assert any("missing ['pathssl-preview.png']" in p for p in problems)


def test_gpu_comparison_is_by_direction_and_length(runs: dict[str, Path], tmp_path: Path) -> None:
    """--min-cosine (test.sh on a GPU): feature vectors 1 % longer and slightly turned (as bf16
    gives) pass; one vector turned further, or 10 % longer, fails; elementwise they all fail."""
    import SimpleITK as sitk

    out = runs["wsi"]
    rng = np.random.default_rng(0)

    def perturbed(name: str, turn: float, stretch: float) -> Path:
        changed = tmp_path / name
        shutil.copytree(out, changed)
        path = changed / "image-neural-representation.json"
        data = json.loads(path.read_text())
        f = np.asarray(data[0]["features"])
        noise = rng.standard_normal(f.shape) * np.linalg.norm(f) / np.sqrt(f.size)
        data[0]["features"] = ((f + turn * noise) * stretch).tolist()
        path.write_text(json.dumps(data))
        mha = next(changed.rglob("pathssl-feature-map.mha"))
        image = sitk.ReadImage(str(mha))
        pixels = sitk.GetArrayFromImage(image) * np.float32(stretch)
        again = sitk.GetImageFromArray(pixels)  # (features, rows, columns): z is the feature
        again.CopyInformation(image)
        sitk.WriteImage(again, str(mha))
        return changed

    close = perturbed("close", 0.02, 1.01)
    assert compare_outputs(out, close, 5e-2, 5e-2, min_cosine=0.999) == []
    assert compare_outputs(out, close, 1e-4, 1e-5) != []
    turned = perturbed("turned", 0.3, 1.0)
    assert any("cosine" in p for p in compare_outputs(out, turned, 5e-2, 5e-2, min_cosine=0.999))
    longer = perturbed("longer", 0.0, 1.1)
    assert any("length" in p for p in compare_outputs(out, longer, 5e-2, 5e-2, min_cosine=0.999))


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


SLIDE = next((CASES / "wsi" / "images" / "whole-slide-image").iterdir())


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
            [_socket(slug="whole-slide-image-x")],
            {"images/whole-slide-image-x/s.tif": SLIDE},
            "input sockets [whole-slide-image-x] (found whole-slide-image-x (Image)) match no "
            "interface of this algorithm",
        ),
        ([{"value": 1}], {}, "each with a socket and its slug"),
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
    case = _case(tmp_path, inputs, files)
    out = tmp_path / "output"
    out.mkdir()
    proc = run_process_py(case, out)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pathssl: error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_mha_tissue_mask_and_resolution_override(tmp_path: Path) -> None:
    import SimpleITK as sitk

    mask = np.zeros((297, 222), np.uint8)
    mask[100:200, 50:150] = 1
    mask_path = tmp_path / "mask.mha"
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(mask_path))
    mask_socket = _socket("tissue-mask", "Segmentation")
    mask_socket["socket"] = mask_socket.pop("interface")  # newer jobs name it `socket`
    case = _case(
        tmp_path,
        [_socket(), mask_socket],
        {"images/whole-slide-image/s.tif": SLIDE, "images/tissue-mask/m.mha": mask_path},
    )
    proc = run_process_py(case, tmp_path / "out", "--mpp", "0.5")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "out" / "pathssl-run-record.json").read_text())
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
    case = _case(tmp_path, [_socket()], {"images/whole-slide-image/s.tif": SLIDE})
    proc = run_process_py(case, tmp_path / "out", "--sockets", str(_config(tmp_path, edit)))
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "out").exists()


def test_shipped_configuration_is_accepted() -> None:
    config = SocketConfig.from_file(RESOURCES)
    assert config.problems() == []
    inputs = {s for i in config.interfaces for s in i.inputs}
    outputs = {s for i in config.interfaces for s in i.outputs}
    assert not inputs & outputs
    paths = [s.relative_path for s in config.sockets.values()]
    assert len(paths) == len(set(paths))


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


def _task_value(task_type: str, slug: str = "unicorn-task-description") -> dict:
    return {
        "interface": {
            "slug": slug,
            "kind": "Anything",
            "super_kind": "Value",
            "relative_path": f"{slug}.json",
        },
        "value": {"domain": "pathology", "modality": "vision", "task_type": task_type},
        "file": None,
        "image": None,
    }


def test_inputs_found_by_kind_and_content_whatever_their_slugs(tmp_path: Path) -> None:
    from pathssl.grand_challenge.sockets import read_inputs_json

    raw = json.loads(RESOURCES.read_text())
    raw["interfaces"].append(
        {
            "name": "renamed",
            "inputs": {"some-slide": "slide", "some-mask": "tissue_mask", "some-task": "x"},
            "outputs": {"patch-neural-representation": "patch_embeddings"},
        }
    )
    raw["interfaces"][-1]["inputs"]["some-task"] = "task_description"
    for slug, kind in (("some-slide", "Image"), ("some-mask", "Segmentation")):
        raw["sockets"][slug] = {"kind": kind, "relative_path": f"images/{slug}"}
    raw["sockets"]["some-mask"]["overlay_segments"] = [{"voxel_value": 0}, {"voxel_value": 1}]
    raw["sockets"]["some-task"] = {"kind": "Anything", "relative_path": "some-task.json"}
    config_path = tmp_path / "sockets.json"
    config_path.write_text(json.dumps(raw))
    case = _case(
        tmp_path,
        [
            _task_value("segmentation", "some-task"),  # listed first: order does not matter
            _socket("some-mask", "Segmentation"),
            _socket("some-slide"),
        ],
        {"images/some-slide/a.tif": SLIDE, "images/some-mask/b.tif": SLIDE},
    )
    job = read_inputs_json(case, SocketConfig.from_file(config_path))
    assert job.interface.name == "renamed" and job.slide.name == "a.tif"
    assert job.tissue_mask.name == "b.tif" and job.task["task_type"] == "segmentation"
    assert job.slugs == {
        "slide": "some-slide",
        "tissue_mask": "some-mask",
        "task_description": "some-task",
    }


@pytest.mark.parametrize(
    ("task_type", "written"),
    [
        ("classification", ["image-neural-representation.json"]),
        ("regression", ["image-neural-representation.json"]),
        ("detection", ["patch-neural-representation.json"]),
        ("segmentation", ["patch-neural-representation.json"]),
        (None, ["image-neural-representation.json", "patch-neural-representation.json"]),
    ],
)
def test_task_type_chooses_the_level(task_type: str | None, written: list[str]) -> None:
    from pathssl.grand_challenge.sockets import Interface

    both = Interface(
        "both",
        {"s": "slide"},
        {"image-neural-representation": "slide_embedding", "patch-a": "patch_embeddings"},
    )
    task = {"task_type": task_type} if task_type else None
    roles, warning = output_roles(both, task)
    levels = {"slide_embedding": written[0], "patch_embeddings": written[-1]}
    assert sorted(levels[r] for r in roles) == sorted(set(written)) and warning == ""
    only_image = Interface("image", {"s": "slide"}, {"i": "slide_embedding"})
    roles, warning = output_roles(only_image, task)
    assert roles == {"slide_embedding"}
    assert ("has no socket" in warning) == (task_type in ("detection", "segmentation"))


def test_bad_task_description_is_one_line(tmp_path: Path) -> None:
    case = _case(
        tmp_path,
        [_socket(), _task_value("survival")],
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
