"""The package regroup (issue 22) changed no output: `pathssl embed` on the committed CMU slide
gives the same bytes in every array and the same JSON as before it (tests/output_digest.py
says what is compared and what is left out: the code hash, versions and timings).

A change meant to move the outputs rewrites the reference and says why here. Rewritten twice:
issue 26 put the mean and std into the OpenVINO graph (the CPU default engine), which moved
the features (and what is made from them: the slide vector, the patch JSON, the feature map)
by float rounding; the engine still matches PyTorch within 1e-5 of the largest feature
(tests/test_inference_engines.py::test_openvino_engine_matches_pytorch). Nothing else moved. Then
run.json alone: its slide_embedding record says how many tiles went into the slide vector.
Then preview.png's pixels alone: its PCA colours come from the covariance with a fixed sign
per axis (outputs/tile_summary.leading_components, as the QuPath export's), no longer from an
SVD whose signs LAPACK picks, so a component's colours may be inverted. Then run.json alone:
its tile_loader says that libjpeg-turbo decoded the JPEG tiles (slide/direct_jpeg.py; every
other file's bytes the same)."""

from __future__ import annotations

import json
from pathlib import Path

from output_digest import slide_digest

from pathssl.cli import main

REFERENCE = Path(__file__).parent / "data" / "embed-reference.json"


def test_outputs_byte_identical_to_before_the_regroup(tmp_path: Path, cmu_slide: Path) -> None:
    assert main(["embed", str(cmu_slide), "--output", str(tmp_path)]) == 0
    got = slide_digest(tmp_path / cmu_slide.stem)
    want = json.loads(REFERENCE.read_text())
    assert sorted(got) == sorted(want)
    changed = [name for name in want if got[name] != want[name]]
    assert changed == []
