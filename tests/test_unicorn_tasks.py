"""Each UNICORN pathology test case (test/input/task*), run by process.py as a job runs it, and
its output scored by unicorn-eval's own loading, adaptors and metrics with a decoder that is
perfect by construction (tests/consumers/unicorn_eval_score.py). A perfect score says the
evaluation reads pathssl's features, coordinates, patch size, spacing and image size as they
were meant; each task is also scored with a wrong prediction, which must score lower.

unicorn-eval runs in its own environment (tests/test_unicorn_consumer.py builds it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_process_py
from test_unicorn_consumer import CONSUMERS, _unicorn_python

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "test" / "input"

# task -> the cases whose outputs are its few-shot and test cases (classification needs two
# slides with different features: each gets its own label)
TASKS = {
    "Task01_classifying_he_prostate_biopsies_into_isup_scores": [
        "task01-biopsy-classification",
        "task04-ihc-classification",
    ],
    "Task04_predicting_slide_level_tumor_proportion_score_in_ihc_stained_wsi": [
        "task04-ihc-classification",
        "task01-biopsy-classification",
    ],
    "Task05_detecting_signet_ring_cells_in_he_stained_wsi_of_gastric_cancer": [
        "task05-roi-detection"
    ],
    "Task08_detecting_mitotic_figures_in_breast_cancer_wsis": ["task05-roi-detection"],
    "Task09_segmenting_rois_in_breast_cancer_wsis": ["task09-roi-segmentation"],
}
METRICS = {"classification": "cohen-kappa-quadratic", "detection": "f1", "segmentation": "dice"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each UNICORN case, run once by process.py: case -> /output."""
    runs = {}
    for case in sorted({c for cases in TASKS.values() for c in cases}):
        out = tmp_path_factory.mktemp("unicorn") / case
        job = run_process_py(CASES / case, out)
        assert job.returncode == 0, job.stderr
        assert job.stderr == ""
        runs[case] = out
    return runs


@pytest.mark.parametrize("task", sorted(TASKS))
def test_unicorn_eval_scores_a_perfect_decoder_perfectly(
    outputs: dict[str, Path], task: str, tmp_path: Path
) -> None:
    python = _unicorn_python()
    pairs = [f"{CASES / case}:{outputs[case]}" for case in TASKS[task]]
    check = subprocess.run(
        [str(python), str(CONSUMERS / "unicorn_eval_score.py"), task, str(tmp_path), *pairs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    scored = json.loads(check.stdout.strip().splitlines()[-1])
    task_type = json.loads((CASES / TASKS[task][0] / "unicorn-task-description.json").read_text())[
        "task_type"
    ]
    assert scored["task_type"] == task_type
    assert scored["metric"] == METRICS[task_type]
    assert scored["perfect"] == pytest.approx(1.0)
    assert scored["wrong"] < 0.5
    assert scored["cases"] == len(TASKS[task])
    if task_type == "classification":  # one slide-level vector per case
        assert scored["embeddings_shapes"] == [[512]] * len(TASKS[task])
    else:  # one vector per patch; the ROI at its stated 0.499 um/px
        assert scored["patch_size"] == [224, 224]
        assert scored["patch_spacing"] == pytest.approx([0.499, 0.499])
