"""Fault catalogue, inputs (#21): misread inputs and model configs. Each case ends as one line
that names the file and the fix (a PathsslError: `pathssl embed` prints it with exit 2, or
records it as the slide's failure in summary.json), never a traceback, never a silent wrong
result; a refused slide leaves nothing of itself in the output folder.

Read it as a catalogue: each test is named for its case and its docstring says what happens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathssl.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"summary.json", "index.html"}  # what a run writes whatever its slides did


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def embed(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
    """`pathssl embed ARGS` in this process: (exit status, stderr lines that are not log)."""
    status = main(["embed", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, [ln for ln in err.splitlines() if ln.startswith(("error:", "FAILED"))]


def failed_slide(out: Path) -> str:
    """The one failure in out/summary.json, after checking nothing else of the slide is there."""
    assert files_under(out) <= RUN_FILES, files_under(out)
    failures = [s for s in json.loads((out / "summary.json").read_text())["slides"]]
    assert [s["status"] for s in failures] == ["failed"]
    error = failures[0]["error"]
    assert "\n" not in error and "unexpected" not in error, error
    return error


def corrupt_bundle(src: Path, dst: Path, edit: Callable[[dict], object]) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def one_model_error(capsys, cmu_slide: Path, bundle: Path, out: Path) -> str:
    status, lines = embed(capsys, str(cmu_slide), "--output", str(out), "--model", str(bundle))
    assert status == 2 and len(lines) == 1, lines
    assert not out.exists()  # refused at load time: no folder, no tile read
    return lines[0]


# -- 1. model bundles: checked when loaded, before any tile is read ----------------------------


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("std", [0.0, 0.224, 0.225], "every value must be above 0"),
        ("std", [-0.229, 0.224, 0.225], "every value must be above 0"),
        ("std", [0.229, 0.224], "it must be 3 numbers"),
        ("mean", [float("nan"), 0.456, 0.406], "every value must be a finite number"),
        ("std", [0.229, float("inf"), 0.225], "every value must be a finite number"),
        ("mean", [123.675, 116.28, 103.53], "divide them by 255"),
        ("target_mpp", 0, "microns per pixel the model was trained at, between 0.05 and 64"),
        ("target_mpp", -1.0, "between 0.05 and 64"),
        ("target_mpp", 500.0, "between 0.05 and 64"),
        ("target_mpp", "0.5", "between 0.05 and 64"),
        ("input_size_px", 0, "it must be a positive whole number"),
        ("input_size_px", -32, "it must be a positive whole number"),
    ],
    ids=[
        "std-0",
        "std-negative",
        "std-2-values",
        "mean-nan",
        "std-inf",
        "mean-0-255-scale",
        "target_mpp-0",
        "target_mpp-negative",
        "target_mpp-500",
        "target_mpp-string",
        "input_size_px-0",
        "input_size_px-negative",
    ],
)
def test_model_config_with_impossible_values(
    key: str, value, says: str, capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """std 0, negative or of the wrong length, mean/std not finite or on the 0-255 scale,
    target_mpp <= 0 or outside 0.05-64 um/px, input_size_px <= 0: refused when the bundle is
    loaded (exit 2, nothing written) with one line naming config.json, the key and the fix."""
    bundle = corrupt_bundle(tiny_bundle_dir, tmp_path / "m", lambda c: c.__setitem__(key, value))
    line = one_model_error(capsys, cmu_slide, bundle, tmp_path / "out")
    assert line.startswith(f"error: {bundle / 'config.json'}: {key} ")
    assert says in line and "fix config.json or export the bundle again" in line


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON (line "),
        (lambda text: text.replace('"target_mpp"', '"mpp"'), "misses the key 'target_mpp'"),
        (lambda text: "[1, 2, 3]", "holds a JSON list, not an object of model settings"),
    ],
    ids=["truncated-json", "missing-key", "not-an-object"],
)
def test_model_config_not_json_or_missing_a_key(
    write, says: str, capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """A config.json that is not valid JSON, misses a key (here target_mpp) or is not an
    object: one line naming config.json and what is wrong in it (the line, the key)."""
    bundle = tmp_path / "m"
    shutil.copytree(tiny_bundle_dir, bundle)
    (bundle / "config.json").write_text(write((bundle / "config.json").read_text()))
    line = one_model_error(capsys, cmu_slide, bundle, tmp_path / "out")
    assert line.startswith(f"error: {bundle / 'config.json'}: {says}")
    assert "fix config.json or export the bundle again" in line


def test_model_embedding_dim_mismatch(
    capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """embedding_dim that is not what the architecture gives: refused at load (not after the
    tissue and tiles of the first slide) with the value to set."""
    real = json.loads((tiny_bundle_dir / "config.json").read_text())["embedding_dim"]
    bundle = corrupt_bundle(
        tiny_bundle_dir, tmp_path / "m", lambda c: c.__setitem__("embedding_dim", real + 1)
    )
    line = one_model_error(capsys, cmu_slide, bundle, tmp_path / "out")
    assert line == (
        f"error: {bundle / 'config.json'}: embedding_dim is {real + 1} but test_resnet gives "
        f"{real} features per tile; set embedding_dim to {real}"
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_model_weights_with_nan_in_batchnorm_statistics(
    bad: float, capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """NaN or inf in a weight or buffer (here BatchNorm running_var, as a diverged training
    run exports it, with a matching sha256): refused at load with one line naming the tensor;
    never embedded (NaN features with PyTorch, a silently zeroed channel with OpenVINO)."""
    from safetensors.torch import load_file, save_file

    from pathssl.encoder.bundle import sha256_of

    bundle = tmp_path / "m"
    shutil.copytree(tiny_bundle_dir, bundle)
    state = load_file(str(bundle / "encoder.safetensors"))
    state["bn1.running_var"][3] = bad
    save_file(state, str(bundle / "encoder.safetensors"))
    config = json.loads((bundle / "config.json").read_text())
    config["weights_sha256"] = sha256_of(bundle / "encoder.safetensors")
    (bundle / "config.json").write_text(json.dumps(config))
    line = one_model_error(capsys, cmu_slide, bundle, tmp_path / "out")
    nan, inf = (1, 0) if bad != bad else (0, 1)
    assert line.startswith(
        f"error: {bundle / 'encoder.safetensors'}: tensor 'bn1.running_var' holds {nan} NaN "
        f"and {inf} infinite values of "
    )
    assert "export the bundle again from a good checkpoint" in line


# -- 2. RGBA -------------------------------------------------------------------------------


def test_rgba_image_reads_transparency_as_white_background(
    capsys, tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    """An RGBA PNG (a stained region on a transparent background) is read as RGB with the
    transparent areas white, the brightfield slide background: tissue is detected as
    brightfield and tiles lie only on the region (not read as black, i.e. fluorescence)."""
    rng = np.random.default_rng(0)
    rgba = np.zeros((1024, 1024, 4), np.uint8)  # transparent black around the tissue
    pink = np.array([200, 110, 170]) + rng.integers(-40, 40, (512, 512, 3))
    rgba[256:768, 256:768, :3] = np.clip(pink, 0, 255)
    rgba[256:768, 256:768, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)

    from pathssl.slide.opening import open_slide

    with open_slide(path) as slide:
        region = slide.read_region(0, 0, 0, 1024, 1024)
    assert (region[:256] == 255).all() and (region[:, :256] == 255).all()  # white, not black
    assert (region[256:768, 256:768] == rgba[256:768, 256:768, :3]).all()  # opaque: as is

    out = tmp_path / "out"
    args = [str(path), "--output", str(out), "--model", str(tiny_bundle_dir), "--mpp", "1.0"]
    status, lines = embed(capsys, *args)
    assert status == 0, lines
    run = json.loads((out / "rgba" / "run.json").read_text())
    assert run["tissue"]["source"] == "detected-brightfield"
    import h5py

    with h5py.File(out / "rgba" / "features.h5") as h5:
        coords = h5["coords"][:]
    assert len(coords) and (coords >= 256 - 64).all() and (coords < 768).all()


# -- 3. greyscale and deeper samples -----------------------------------------------------------


def test_greyscale_brightfield_slide_is_refused_saying_what_it_is(
    capsys, tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    """A greyscale (1 channel) image on a light background, a brightfield scan without colour:
    refused with one line saying "greyscale, 1 channel" and to export it in RGB colour, not
    "no tissue" (tissue detection works on stain colour; the encoder was trained on colour)."""
    grey = np.full((1024, 1024), 235, np.uint8)
    grey[256:768, 256:768] = 120 + np.random.default_rng(0).integers(-30, 30, (512, 512))
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    out = tmp_path / "out"
    args = [str(path), "--output", str(out), "--model", str(tiny_bundle_dir), "--mpp", "1.0"]
    status, lines = embed(capsys, *args)
    assert status == 1 and len(lines) == 1
    error = failed_slide(out)
    assert error.startswith(f"{path}: greyscale, 1 channel, 8-bit samples, on a light background")
    assert "export or scan the slide as 8-bit RGB colour" in error and "no tile" not in error


def test_12_bit_rgb_in_16_bit_samples_is_scaled_to_8_bit_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """16-bit RGB samples holding 12-bit data (0-4095, as many cameras write): read at their
    own depth, scaled to 8 bits (4095 -> 255) with one warning line that says so, not cut to
    their top 8 bits (which reads 12-bit data nearly black, then as fluorescence)."""
    import tifffile

    rng = np.random.default_rng(0)
    samples = rng.integers(0, 4096, (64, 96, 3)).astype(np.uint16)
    samples[0, 0] = 4095
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, samples, photometric="rgb")

    from pathssl.slide.opening import open_slide

    with caplog.at_level(logging.WARNING, logger="pathssl"), open_slide(path) as slide:
        region = slide.read_region(0, 0, 0, 96, 64)
    expected = np.round(samples.astype(np.float64) * 255 / 4095).astype(np.uint8)
    assert np.abs(region.astype(int) - expected).max() <= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{path}: 16-bit samples (largest 4095: 12-bit data) scaled to 8-bit for embedding"
    ]


# -- 4. MetaImage without its data file -------------------------------------------------------


def test_mhd_whose_raw_data_file_is_missing_names_the_missing_file(
    capsys, tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    """An .mhd header whose ElementDataFile (.raw) is not beside it: one line naming the
    missing .raw file and to copy it (or give a single-file .mha), not a multi-line ITK error
    about a region that 'may be truncated'."""
    import SimpleITK as sitk

    path = tmp_path / "slide.mhd"
    image = sitk.GetImageFromArray(np.full((256, 256, 3), 200, np.uint8), isVector=True)
    sitk.WriteImage(image, str(path))
    (tmp_path / "slide.raw").unlink()
    out = tmp_path / "out"
    status, lines = embed(
        capsys, str(path), "--output", str(out), "--model", str(tiny_bundle_dir), "--mpp", "1"
    )
    assert status == 1 and len(lines) == 1
    assert failed_slide(out) == (
        f"{path}: its pixel data file {tmp_path / 'slide.raw'} (ElementDataFile in the header) "
        "is missing: copy slide.raw beside slide.mhd, or give a single-file .mha"
    )


# -- 5. an empty tissue mask ------------------------------------------------------------------


def test_empty_tissue_mask_is_named_as_the_mask_not_as_no_tissue(
    capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """--tissue-mask with a mask that is all zero: one line saying the tissue mask (named)
    marks no tissue and that non-zero means tissue, not "no tile has 25 % tissue" about the
    slide."""
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((297, 222), np.uint8)).save(mask)  # the CMU slide's shape / 10
    out = tmp_path / "out"
    args = [str(cmu_slide), "--output", str(out), "--model", str(tiny_bundle_dir)]
    status, lines = embed(capsys, *args, "--tissue-mask", str(mask))
    assert status == 1 and len(lines) == 1
    assert failed_slide(out) == (
        f"{mask}: the tissue mask marks no tissue (all its 222x297 pixels are 0, and non-zero "
        "means tissue); give a mask with the tissue non-zero, or leave the mask out to detect "
        "tissue"
    )


# -- 6. upscaling ------------------------------------------------------------------------------


def test_slide_much_coarser_than_the_model_is_refused_not_upscaled(
    capsys, tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """A slide whose finest level is more than 2x coarser than the model's resolution (here
    8 um/px for a 2 um/px model: tiles blown up 4x): one line naming both resolutions and the
    fixes (a finer scan, a coarser model, --allow-upscale); up to 2x is read as before, and
    TilingSpec(max_upscale=None) (what --allow-upscale sets) lifts the limit."""
    out = tmp_path / "out"
    args = [str(cmu_slide), "--output", str(out), "--model", str(tiny_bundle_dir)]
    status, lines = embed(capsys, *args, "--mpp", "8")
    assert status == 1 and len(lines) == 1
    assert failed_slide(out) == (
        f"{cmu_slide}: its finest level is 8 microns per pixel, 4x coarser than the model's 2 "
        "microns per pixel: its tiles would be upscaled more than 2x, inventing detail; embed a "
        "scan at 2 microns per pixel or finer, use a model trained at a coarser resolution, "
        "check --mpp if you gave it, or pass --allow-upscale to embed it anyway"
    )

    from pathssl.slide.reader import SlideLevel
    from pathssl.tiles.grid import TilingSpec, plan_tiles
    from pathssl.tissue.detection import TissueMask

    levels = (SlideLevel(2220, 2967, 1.0),)
    tissue = TissueMask(np.ones((297, 222), bool), (10.0, 10.0), 80.0, "test")
    assert len(plan_tiles(levels, 4.2, tissue, TilingSpec(2.0, 32))) > 0  # 2.1x: tolerated
    grid = plan_tiles(levels, 8.0, tissue, TilingSpec(2.0, 32, max_upscale=None))
    assert grid.read_size_px == 8 and len(grid) > 0  # the override: upscaled 4x, as asked


# -- 7. unreadable slide files -----------------------------------------------------------------


def test_slide_without_read_permission_is_one_line(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    """A slide file the user may not read (chmod 000): one line saying permission is denied
    and how to grant it; no traceback, nothing of the slide written. As root (who reads
    anything) the run is made as the unprivileged user `nobody`, through setpriv."""
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root reads files whatever their mode")
    # a folder the other user can reach (pytest's own is private to root)
    work = Path(tempfile.mkdtemp(prefix="pathssl-perm-"))
    try:
        work.chmod(0o777)
        model = work / "model"
        shutil.copytree(tiny_bundle_dir, model)
        for p in [model, *model.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        slide = work / "locked.svs"
        shutil.copy(ROOT / "tests" / "data" / "CMU-1-Small-Region.svs", slide)
        slide.chmod(0o000)
        out = work / "out"
        command = [sys.executable, "-m", "pathssl.cli", "embed", str(slide)]
        command += ["--output", str(out), "--model", str(model)]
        if as_root:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=work, env=env, timeout=300
        )
        if as_root and "setpriv" in done.stderr and done.returncode != 1:
            pytest.skip(f"cannot drop root here: {done.stderr.strip()[:200]}")
        assert "Traceback" not in done.stderr, done.stderr
        failed = [ln for ln in done.stderr.splitlines() if ln.startswith("FAILED")]
        assert done.returncode == 1 and len(failed) == 1, done.stderr
        assert failed_slide(out) == (
            f"{slide}: cannot be read (permission denied for this user); give the account that "
            "runs pathssl read access (e.g. `chmod a+r` on the file, and `a+x` on its folders), "
            "or copy the slide somewhere it can read"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
