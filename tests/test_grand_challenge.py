"""The container's process.py, run as Grand-Challenge runs it (without Docker): the committed
cases and their expected outputs, ROIs, tissue masks, reruns, the tile cap and the output
comparison. Faults: test_grand_challenge_faults.py; UNICORN's slugs and task descriptions:
test_unicorn_slugs.py; the Dockerfile and scripts: test_container_files.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process_py
from gc_jobs import CASES, EXPECTED, RESOURCES, ROOT, SLIDE, files_under, image_socket, job_case

from pathssl.grand_challenge.compare import compare_outputs
from pathssl.grand_challenge.run import JSON_BYTES_PER_FEATURE, PATCH_JSON_BUDGET_BYTES, tile_cap
from pathssl.grand_challenge.sockets import SocketConfig, output_roles

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
    assert files_under(out) == expected  # nothing else: no work folder, no unlisted output
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


def test_mha_tissue_mask_and_resolution_override(tmp_path: Path) -> None:
    import SimpleITK as sitk

    mask = np.zeros((297, 222), np.uint8)
    mask[100:200, 50:150] = 1
    mask_path = tmp_path / "mask.mha"
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(mask_path))
    mask_socket = image_socket("tissue-mask", "Segmentation")
    mask_socket["socket"] = mask_socket.pop("interface")  # newer jobs name it `socket`
    case = job_case(
        tmp_path,
        [image_socket(), mask_socket],
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


def test_shipped_configuration_is_accepted() -> None:
    config = SocketConfig.from_file(RESOURCES)
    assert config.problems() == []
    inputs = {s for i in config.interfaces for s in i.inputs}
    outputs = {s for i in config.interfaces for s in i.outputs}
    assert not inputs & outputs
    paths = [s.relative_path for s in config.sockets.values()]
    assert len(paths) == len(set(paths))
