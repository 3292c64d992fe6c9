"""A run plans the next slide while one embeds (issue 26): the outputs are the same as when
every slide is planned in its own turn, a reused slide is not planned at all, and a slide
whose planning fails ahead is reported as failed in its own turn, in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from pathssl.embed import EmbedOptions, embed_slides
from pathssl.embed import plan_ahead as plan_ahead_module
from pathssl.encoder.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]


def _features(out: Path, name: str) -> np.ndarray:
    with h5py.File(out / name / "features.h5") as f:
        return np.asarray(f["features"])


def test_planned_ahead_equals_planned_in_turn(tmp_path: Path, cmu_slide: Path, monkeypatch):
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    (slides / "c.svs").write_bytes(b"not a slide")  # fails in planning, ahead of its turn
    bundle = load_bundle(ROOT / "model")
    options = EmbedOptions(max_tiles=16)
    started = []
    real_start = plan_ahead_module.PlanAhead.start
    monkeypatch.setattr(
        plan_ahead_module.PlanAhead,
        "start",
        lambda self, slide: (started.append(slide.path.name), real_start(self, slide)),
    )
    reports = embed_slides([slides], tmp_path / "ahead", bundle, options)
    assert started == ["b.svs", "c.svs"]  # each next slide, while the one before embeds
    status = {Path(r.slide).name: r.status for r in reports}
    assert status == {"a.svs": "complete", "b.svs": "complete", "c.svs": "failed"}
    error = next(r.error for r in reports if r.status == "failed")
    assert "c.svs" in error and "\n" not in error
    # the same slides, each planned in its own turn (one slide per run)
    for name in ("a", "b"):
        embed_slides([slides / f"{name}.svs"], tmp_path / "in-turn", bundle, options)
        assert np.array_equal(
            _features(tmp_path / "ahead", name), _features(tmp_path / "in-turn", name)
        )
        for run in ("ahead", "in-turn"):
            assert (
                json.loads((tmp_path / run / name / "run.json").read_text())["status"] == "complete"
            )
    started.clear()
    again = embed_slides([slides], tmp_path / "ahead", bundle, options)
    assert [r.status for r in again if Path(r.slide).name != "c.svs"] == ["reused", "reused"]
    assert started == []  # reused slides are never planned
