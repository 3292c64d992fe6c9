"""Fault catalogue, runs (issue #21): reruns, names, shards, masks and option values never give
a slide the wrong features, and a run never says "done" when it is not. One test per case; the
docstring says the expected behaviour. (Inputs and model configs: test_fault_catalogue_inputs.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pathssl.cli import main
from pathssl.embed import EmbedOptions, embed_slides
from pathssl.embed.inputs import plan_inputs
from pathssl.errors import PathsslError

OPTS = EmbedOptions(num_workers=0, max_tiles=4)


def _features(folder: Path) -> np.ndarray:
    with h5py.File(folder / "features.h5") as h5:
        return h5["features"][:]


def _identity(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())["run_identity"]


def _two_different_slides(tmp_path: Path, cmu_slide: Path) -> tuple[Path, Path]:
    """Two real slides with different content: the CMU slide, and it mirrored (a TIFF)."""
    from openslide import OpenSlide

    a = tmp_path / "src-a.svs"
    shutil.copy(cmu_slide, a)
    with OpenSlide(str(cmu_slide)) as s:
        rgb = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))[:, ::-1]
    b = tmp_path / "src-b.tif"
    import tifffile

    res = (1e4 / 0.499, 1e4 / 0.499)
    tifffile.imwrite(b, rgb, tile=(256, 256), resolution=res, resolutionunit="CENTIMETER")
    return a, b


def test_identical_rerun_reuses_everything_byte_identical(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """An identical rerun reuses the outputs (status "reused") and leaves them untouched."""
    out = tmp_path / "out"
    first = embed_slides([cmu_slide], out, tiny_bundle, OPTS)
    before = {p: p.read_bytes() for p in (out / cmu_slide.stem).rglob("*") if p.is_file()}
    again = embed_slides([cmu_slide], out, tiny_bundle, OPTS)
    assert [r.status for r in first] == ["complete"] and [r.status for r in again] == ["reused"]
    after = {p: p.read_bytes() for p in (out / cmu_slide.stem).rglob("*") if p.is_file()}
    assert after == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"complete": 0, "reused": 1, "skipped": 0, "failed": 0}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"min_tissue_fraction": 0.6}, "option min_tissue_fraction: 0.25 -> 0.6"),
        ({"max_tiles": 3}, "option max_tiles: 4 -> 3"),
        ({"mpp": 0.6}, "option mpp: None -> 0.6"),
        ({"exclude_ink": False}, "option exclude_ink"),
        ({"engine": "pytorch"}, "the device or engine"),
    ],
)
def test_rerun_with_another_option_redoes_and_says_why(
    tmp_path: Path, cmu_slide: Path, tiny_bundle, change: dict, words: str
) -> None:
    """Changing any result-affecting option and rerunning into the same folder redoes the
    slide, and the report and summary say what differed; the new run.json has the new
    identity."""
    out = tmp_path / "out"
    embed_slides([cmu_slide], out, tiny_bundle, OPTS)
    old = _identity(out / cmu_slide.stem)
    from dataclasses import replace

    reports = embed_slides([cmu_slide], out, tiny_bundle, replace(OPTS, **change))
    assert reports[0].status == "complete" and reports[0].note.startswith("redone")
    assert words in reports[0].note
    assert _identity(out / cmu_slide.stem)["digest"] != old["digest"]
    summary = json.loads((out / "summary.json").read_text())
    assert words in summary["slides"][0]["note"]


def test_rerun_with_another_model_redoes(tmp_path: Path, cmu_slide: Path, tiny_bundle) -> None:
    """Another model bundle into the same folder: the slide is redone with that model."""
    from pathssl.encoder.bundle import load_bundle
    from pathssl.encoder.export import random_bundle

    out = tmp_path / "out"
    embed_slides([cmu_slide], out, tiny_bundle, OPTS)
    other_dir = tmp_path / "other"
    random_bundle(other_dir, "test_resnet", input_size_px=32, target_mpp=2.0, seed=1)
    other = load_bundle(other_dir)
    reports = embed_slides([cmu_slide], out, other, OPTS)
    assert reports[0].status == "complete" and "the model" in reports[0].note
    record = json.loads((out / cmu_slide.stem / "run.json").read_text())
    assert record["model"]["weights_sha256"] == other.weights_sha256


def test_mismatch_refused_on_request_is_one_line(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """With --on-mismatch refuse, outputs made differently are kept and the slide fails with
    one line saying what differs; exit code 1."""
    out = tmp_path / "out"
    common = [str(cmu_slide), "--output", str(out), "--max-tiles", "4", "--engine", "pytorch"]
    assert main(["embed", *common]) == 0
    before = (out / cmu_slide.stem / "features.h5").read_bytes()
    code = main(["embed", *common, "--min-tissue", "0.6", "--on-mismatch", "refuse"])
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    error = summary["slides"][0]["error"]
    assert "min_tissue_fraction" in error and "--on-mismatch" in error and "\n" not in error
    assert (out / cmu_slide.stem / "features.h5").read_bytes() == before


def test_replaced_slide_file_is_redone(tmp_path: Path, cmu_slide: Path, tiny_bundle) -> None:
    """A slide file replaced by another under the same name is redone, never reused."""
    a, b = _two_different_slides(tmp_path, cmu_slide)
    slide = tmp_path / "in" / "x.tif"
    slide.parent.mkdir()
    shutil.copy(b, slide)
    out = tmp_path / "out"
    embed_slides([slide], out, tiny_bundle, OPTS)
    first = _features(out / "x")
    shutil.copy(a, slide)  # same name, other content
    reports = embed_slides([slide], out, tiny_bundle, OPTS)
    assert reports[0].status == "complete" and "the slide file" in reports[0].note
    assert not np.array_equal(_features(out / "x"), first)


def test_same_named_slides_keep_their_own_features_across_reorderings(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """Two slides called x in different subfolders: each output folder always holds the
    features of the same slide, whatever the order they are given in, as files or as a
    folder; the mapping is in the summary."""
    a, b = _two_different_slides(tmp_path, cmu_slide)
    root = tmp_path / "in"
    (root / "p").mkdir(parents=True)
    (root / "q").mkdir()
    shutil.copy(a, root / "p" / "x.svs")
    shutil.copy(b, root / "q" / "x.tif")
    pa, qb = root / "p" / "x.svs", root / "q" / "x.tif"
    for order in ([pa, qb], [qb, pa]):
        out = tmp_path / f"out-{order[0].parent.name}"
        embed_slides(order, out, tiny_bundle, OPTS)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["inputs"] == {"p--x": str(pa), "q--x": str(qb)}
    ref_p = _features(tmp_path / "out-p" / "p--x")
    assert np.array_equal(_features(tmp_path / "out-q" / "p--x"), ref_p)
    out = tmp_path / "folder"
    embed_slides([root], out, tiny_bundle, OPTS)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["p--x", "q--x"]
    assert np.array_equal(_features(out / "p--x"), ref_p)
    reordered = embed_slides([qb, pa], out, tiny_bundle, OPTS)  # names unchanged: reused
    assert [r.status for r in reordered] == ["reused", "reused"]


def test_cluster_variables_alone_embed_every_slide(
    tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    """SLURM_NTASKS=4 (or WORLD_SIZE=2) in the environment of a plain `pathssl embed`: every
    slide is embedded, one line says why it did not shard, the summary shows world 1."""
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    env = {**os.environ, "SLURM_NTASKS": "4", "SLURM_PROCID": "2", "WORLD_SIZE": "2"}
    env["RANK"] = "1"
    args = [str(slides), "--output", str(tmp_path / "out"), "--model", str(tiny_bundle_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "pathssl.cli", "embed", *args, "--max-tiles", "2"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 embedded" in done.stdout
    assert "SLURM_NTASKS=4" in done.stderr and "--shard env" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["shard"]["world"] == 1 and summary["shard"]["slides_owned"] == ["a", "b", "c"]


def test_bad_shard_values_are_one_line(tmp_path: Path, cmu_slide: Path, capsys) -> None:
    """--shard 3/2, --shard x, and --shard env with an empty SLURM_NTASKS: exit 2, one
    line, nothing written."""
    out = tmp_path / "out"
    for value in ("3/2", "x"):
        assert main(["embed", str(cmu_slide), "--output", str(out), "--shard", value]) == 2
    os.environ["SLURM_NTASKS"] = ""
    try:
        assert main(["embed", str(cmu_slide), "--output", str(out), "--shard", "env"]) == 2
    finally:
        del os.environ["SLURM_NTASKS"]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 3 and "SLURM_NTASKS" in errors[2]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-tiles", "0"], "--max-tiles 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--device", "foo"], "--device foo"),
        (["--min-tissue", "-0.5"], "--min-tissue -0.5"),
        (["--min-tissue", "1.5"], "--min-tissue 1.5"),
        (["--mpp", "0"], "--mpp 0"),
        (["--augmentations", "-1"], "--augmentations -1"),
        (["--workers", "-2"], "--workers -2"),
        (["--tissue-mask", "/no/such/mask.png"], "no such file"),
    ],
)
def test_bad_option_values_are_one_line_before_work(
    tmp_path: Path, cmu_slide: Path, capsys, args: list[str], words: str
) -> None:
    """Each bad option value: exit 2, one line naming the option and what to give, no
    traceback, and no output folder made."""
    out = tmp_path / "out"
    assert main(["embed", str(cmu_slide), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_mask_folder_is_matched_per_slide(tmp_path: Path, cmu_slide: Path, tiny_bundle) -> None:
    """A folder of masks: each slide gets the mask named like it (x.png or x_mask.png), a
    slide without one is said in one line and detects its tissue, two candidates are an
    error naming both."""
    from openslide import OpenSlide

    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("left", "right", "none"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    with OpenSlide(str(cmu_slide)) as s:
        w, h = s.dimensions
    masks = tmp_path / "masks"
    masks.mkdir()
    half = np.zeros((h // 16, w // 16), np.uint8)
    left, right = half.copy(), half.copy()
    left[:, : half.shape[1] // 2] = 255
    right[:, half.shape[1] // 2 :] = 255
    Image.fromarray(left).save(masks / "left.png")
    Image.fromarray(right).save(masks / "right_mask.png")
    opts = EmbedOptions(num_workers=0, tissue_mask=masks, mpp=0.499)
    reports = {
        Path(r.slide).stem: r for r in embed_slides([slides], tmp_path / "o", tiny_bundle, opts)
    }
    assert all(r.status == "complete" for r in reports.values())
    runs = {n: json.loads((tmp_path / "o" / n / "run.json").read_text()) for n in reports}
    assert runs["left"]["tissue"]["source"] == "input:left.png"
    assert runs["right"]["tissue"]["source"] == "input:right_mask.png"
    assert runs["none"]["tissue"]["source"].startswith("detected")
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("none.svs: no mask" in n for n in summary["notes"])

    def x_of(name: str) -> np.ndarray:
        with h5py.File(tmp_path / "o" / name / "features.h5") as f:
            return f["coords"][:, 0]

    assert x_of("left").max() < w / 2 <= x_of("right").min() + 256
    Image.fromarray(left).save(masks / "left_mask.png")  # now two masks match left.svs
    with pytest.raises(PathsslError, match=r"several tissue masks.*left"):
        embed_slides([slides], tmp_path / "o2", tiny_bundle, opts)


def test_one_mask_file_for_many_slides_is_refused(tmp_path: Path, cmu_slide: Path) -> None:
    """One mask file with a folder of slides: refused in one line (give a folder of masks)."""
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(mask)
    with pytest.raises(PathsslError, match="one file for 2 slides"):
        plan_inputs([slides], tmp_path / "out", mask)


def test_output_folder_inside_the_input_is_not_read_back(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """--output inside the input folder: the next run finds the same one slide, never the
    outputs (.mha, .png) as slides."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(cmu_slide, root / "s.svs")
    embed_slides([root], root / "out", tiny_bundle, OPTS)
    assert any((root / "out" / "s").rglob("*.mha")) and any((root / "out").rglob("*.png"))
    again = embed_slides([root], root / "out", tiny_bundle, OPTS)
    assert [(Path(r.slide).name, r.status) for r in again] == [("s.svs", "reused")]


def test_deepzoom_tile_folders_are_not_slides(tmp_path: Path) -> None:
    """A DeepZoom pyramid (x.dzi + x_files/ of JPEG tiles) is one slide, not hundreds."""
    (tmp_path / "x_files" / "0").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "x_files" / "0" / f"{i}_0.jpeg")
    (tmp_path / "x.dzi").write_text("<Image/>")
    plan = plan_inputs([tmp_path], tmp_path / "out")
    assert [s.path.name for s in plan.slides] == ["x.dzi"]


def test_run_file_names_and_long_names_do_not_clash(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """A slide called summary.json.tif keeps its outputs beside the run's summary.json, and a
    250-character file name works (its folder name is shortened stably, with a hash)."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(cmu_slide, root / "summary.json.svs")
    long = root / ("l" * 246 + ".svs")
    shutil.copy(cmu_slide, long)
    out = tmp_path / "out"
    reports = embed_slides([root], out, tiny_bundle, OPTS)
    assert [r.status for r in reports] == ["complete", "complete"]
    summary = json.loads((out / "summary.json").read_text())
    names = set(summary["inputs"])
    assert "slide-summary.json" in names and (out / "slide-summary.json" / "run.json").is_file()
    long_name = next(n for n in names if n.startswith("lll"))
    assert len(long_name.encode()) <= 160 and (out / long_name / "features.h5").is_file()
    assert plan_inputs([root], out).slides[0].name == long_name  # stable


def test_dangling_links_and_unreadable_folders_are_listed(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    """A dangling symbolic link and a folder that cannot be listed are left out by name and
    reason in the summary (and a log line), never silently; the other slides are embedded."""
    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    shutil.copy(cmu_slide, root / "ok.svs")
    (root / "gone.svs").symlink_to(tmp_path / "nowhere.svs")
    import pathssl.embed.inputs as inputs

    real_walk = os.walk

    def walk(top, onerror=None, followlinks=False):  # as for a folder without permission
        for entry in real_walk(top, onerror=onerror, followlinks=followlinks):
            if Path(entry[0]).name == "locked":
                onerror(PermissionError(13, "Permission denied", entry[0]))
                continue
            yield entry

    inputs.os.walk, saved = walk, inputs.os.walk
    try:
        reports = embed_slides([root], tmp_path / "out", tiny_bundle, OPTS)
    finally:
        inputs.os.walk = saved
    assert [Path(r.slide).name for r in reports] == ["ok.svs"]
    left_out = json.loads((tmp_path / "out" / "summary.json").read_text())["inputs_left_out"]
    reasons = {Path(item["path"]).name: item["reason"] for item in left_out}
    assert reasons["gone.svs"] == "dangling symbolic link"
    assert reasons["locked"].startswith("folder not readable")


def test_upscaling_beyond_2x_is_refused_unless_allowed(
    tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path, capsys
) -> None:
    """A slide (here: told it is at 8 um/px) more than 2x coarser than the model's 2 um/px:
    the slide fails with one line naming both resolutions and --allow-upscale; with
    --allow-upscale it is embedded and the option is in its run identity."""
    common = [str(cmu_slide), "--model", str(tiny_bundle_dir), "--mpp", "8", "--max-tiles", "2"]
    assert main(["embed", *common, "--output", str(tmp_path / "a")]) == 1
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    error = summary["slides"][0]["error"]
    assert "8 microns per pixel" in error and "--allow-upscale" in error and "\n" not in error
    assert not (tmp_path / "a" / cmu_slide.stem).exists()
    assert main(["embed", *common, "--output", str(tmp_path / "b"), "--allow-upscale"]) == 0
    assert _identity(tmp_path / "b" / cmu_slide.stem)["options"]["allow_upscale"] is True
