"""Every UNICORN pathology slide slug as the platform lays out its job (issue 25), with and
without a tissue mask and a task description: the interface chosen and exactly the files
written; inputs found by kind and content whatever their slugs; the task type choosing the
level of the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gc_jobs import CASES, RESOURCES, ROOT, SLIDE, files_under, image_socket, job_case, task_value

from pathssl.grand_challenge.sockets import SocketConfig, output_roles

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
    socket = image_socket("tissue-mask", "Segmentation")
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
    sockets, files = [image_socket(slug)], {f"images/{slug}/{SLIDE.name}": SLIDE}
    if with_mask:  # the panimg-style mask (MinSampleValue/MaxSampleValue) of the test cases
        sockets.append(_mask_socket())
        files[f"images/tissue-mask/{MASK.name}"] = MASK
    if with_task:
        sockets.append(task_value(task_type))
        files["unicorn-task-description.json"] = json.dumps(sockets[-1]["value"]).encode()
    case, out = job_case(tmp_path, sockets, files), tmp_path / "output"
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
    assert files_under(out) == sorted(expected)
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
    case = job_case(
        tmp_path,
        [
            task_value("segmentation", "some-task"),  # listed first: order does not matter
            image_socket("some-mask", "Segmentation"),
            image_socket("some-slide"),
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
