"""Every UNICORN pathology slide slug as the platform lays out its job (issue 25), with and
without a tissue mask and a task description: the interface chosen and exactly the files
written. The job helpers are test_grand_challenge.py's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_grand_challenge import CASES, ROOT, SLIDE, _case, _files, _socket, _task_value

MASK = next((CASES / "wsi-with-tissue-mask" / "images" / "tissue-mask").iterdir())
# slide slug -> (the interface's base name, a task type of its UNICORN task, the output it needs)
SLUG_JOBS = {
    "prostate-tissue-biopsy-whole-slide-image": ("biopsy-wsi", "classification", "image"),
    "prostatectomy-tissue-whole-slide-image": ("prostatectomy-wsi", "regression", "image"),
    "ihc-staining-for-pd-l1": ("ihc-pd-l1", "classification", "image"),
    "histopathology-region-of-interest-cropout": ("roi-cropout", "detection", "patch"),
    "he-staining": ("he-staining", "classification", "image"),
    "whole-slide-image": ("wsi", "classification", "image"),
}
PATHSSL_FILES = [
    "images/pathssl-feature-map/pathssl-feature-map.mha",
    "pathssl-preview.png",
    "pathssl-run-record.json",
]


def _mask_socket() -> dict:
    socket = _socket("tissue-mask", "Segmentation")
    socket["interface"]["overlay_segments"] = [
        {"name": "background", "visible": False, "voxel_value": 0},
        {"name": "tissue", "visible": True, "voxel_value": 1},
    ]
    return socket


@pytest.mark.parametrize("with_task", [False, True], ids=["no-task", "task"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("slug", sorted(SLUG_JOBS))
def test_every_unicorn_slug_with_and_without_mask_and_task(
    tmp_path: Path, capsys: pytest.CaptureFixture, slug: str, with_mask: bool, with_task: bool
) -> None:
    """A job for each UNICORN pathology slide slug, with and without a tissue mask and a task
    description, as the platform lays it out: the interface named for that set, and exactly
    the files its task type needs (the plain whole-slide-image interfaces: pathssl's too)."""
    from pathssl.grand_challenge.run import main

    base, task_type, level = SLUG_JOBS[slug]
    sockets, files = [_socket(slug)], {f"images/{slug}/{SLIDE.name}": SLIDE}
    if with_mask:  # the panimg-style mask (MinSampleValue/MaxSampleValue) of the test cases
        sockets.append(_mask_socket())
        files[f"images/tissue-mask/{MASK.name}"] = MASK
    if with_task:
        sockets.append(_task_value(task_type))
        files["unicorn-task-description.json"] = json.dumps(sockets[-1]["value"]).encode()
    case, out = _case(tmp_path, sockets, files), tmp_path / "output"
    out.mkdir()
    quick = ["--max-tiles", "4", "--engine", "pytorch", "--batch-size", "4"]
    assert (
        main(["--input", str(case), "--output", str(out), "--model", str(ROOT / "model"), *quick])
        == 0
    )
    name = base + "-with-tissue-mask" * with_mask + "-with-task" * with_task
    assert f"Grand-Challenge job, interface {name}:" in capsys.readouterr().out
    expected = [f"{level}-neural-representation.json"]
    if slug == "whole-slide-image" and not with_task:  # the ordinary page: both levels, and more
        expected = ["image-neural-representation.json", "patch-neural-representation.json"]
        expected += PATHSSL_FILES + (
            []
            if with_mask
            else ["images/pathssl-detected-tissue-mask/pathssl-detected-tissue-mask.mha"]
        )
    assert _files(out) == sorted(expected)
    for written in expected[: 2 if len(expected) > 1 else 1]:
        (value,) = json.loads((out / written).read_text())
        assert value["title"] == SLIDE.name
        vectors = (
            [value["features"]]
            if "features" in value
            else [p["features"] for p in value["patches"]]
        )
        assert 1 <= len(vectors) <= 4 and {len(v) for v in vectors} == {512}
        assert np.isfinite(np.asarray(vectors, dtype=float)).all()
