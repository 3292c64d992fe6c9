"""Run inside unicorn-eval's own environment (see tests/test_unicorn_tasks.py): score pathssl's
Grand-Challenge outputs for one UNICORN task the way the UNICORN evaluation does, with a
decoder that is perfect by construction, and print the scores as JSON.

    python unicorn_eval_score.py TASK_NAME WORK_DIR CASE_INPUT:CASE_OUTPUT [...]

The steps are those of unicorn_eval.evaluate.process_task_in_subprocess (that module is not
imported: it needs dragon_eval, the language tasks' evaluator): the evaluation container's
layout (predictions.json, one output folder per job, ground truth with mapping.csv), then
read_inputs / process for the few-shot cases, extract_embeddings_and_labels, get_adaptor and
fit, read_inputs / process for the test cases, extract_labels, predict, evaluate_predictions.
Every job output serves as one few-shot case and, copied, as one test case.

- classification: unicorn-eval's own 1-nn-weighted adaptor (deterministic); each output has
  its own label, so the nearest shot of each test case is its own copy: perfect if the
  features load as they were written. (Its 1-nn and logistic-regression adaptors pass a
  case's features to scikit-learn as they load them, a 1-D vector, and stop with "Expected
  2D array": the same happens with unicorn-baseline's output, whose `features` is 1-D too.)
- detection: a DensityMap whose decoder returns, for each patch, the target heatmap
  unicorn-eval built for that patch from the ground-truth points (assign_cells_to_patches,
  coordinates_to_heatmap); unicorn-eval's own inference turns heatmaps back into points.
- segmentation: a SegmentationUpsampling whose decoder returns, for each patch, the label
  unicorn-eval cut for it (construct_segmentation_labels); its own inference stitches them.

So a perfect score means unicorn-eval reads the coordinates, patch size, spacing and image size
as pathssl meant them. Each task is also scored with a wrong prediction (labels permuted,
points moved, masks shifted), which must score lower: the metric is not a constant.

Libraries needed only by other tasks' metrics (survival c-index: Task03; PI-CAI and ULS,
radiology tasks; caption metrics: Task20) are stood in for by empty modules, so that
unicorn_eval.utils imports without them; the pathology metrics used here (Cohen's kappa, evalutils'
score_detection F1, pycm Dice) are the real ones.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import tifffile
import torch


def _stand_in(name: str, **attrs: object) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod = sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    for key, value in attrs.items():
        setattr(mod, key, value)


def _unused(*_: object, **__: object) -> None:
    raise RuntimeError("a metric library of another task was stood in for")


for _name, _attr in [
    ("sksurv.metrics", "concordance_index_censored"),
    ("skimage.measure", "regionprops"),
    ("bert_score", "BERTScorer"),
    ("pycocoevalcap.bleu.bleu", "Bleu"),
    ("pycocoevalcap.cider.cider", "Cider"),
    ("pycocoevalcap.meteor.meteor", "Meteor"),
    ("pycocoevalcap.rouge.rouge", "Rouge"),
    ("transformers", "logging"),  # given set_verbosity_error below
    ("picai_eval", "evaluate"),  # Task06 (prostate MRI)
    ("report_guided_annotation", "extract_lesion_candidates"),
]:
    _stand_in(_name, **{_attr: _unused})
sys.modules["transformers"].logging = types.SimpleNamespace(set_verbosity_error=lambda: None)

import unicorn_eval.adaptors.detection as det  # noqa: E402
import unicorn_eval.adaptors.segmentation.baseline_segmentation_upsampling.main as seg  # noqa: E402
import unicorn_eval.io as io  # noqa: E402
import unicorn_eval.utils as utils  # noqa: E402
from unicorn_eval.adaptors.segmentation.data_handling import (  # noqa: E402
    construct_segmentation_labels,
)


class _Lookup(torch.nn.Module):
    """A decoder that answers each embedding with the target stored for it."""

    def __init__(self, targets: dict[bytes, np.ndarray]) -> None:
        super().__init__()
        self.targets = targets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().cpu().numpy().astype(np.float32)
        return torch.stack([torch.as_tensor(self.targets[r.tobytes()]) for r in rows])


def _key(embedding: object) -> bytes:
    return np.asarray(embedding, dtype=np.float32).tobytes()


class PerfectDensityMap(det.DensityMap):
    def fit(self, shot_features, shot_coordinates, shot_labels, shot_ids, **kwargs):
        data = det.construct_detection_labels(
            shot_coordinates,
            shot_features,
            shot_ids,
            labels=shot_labels,
            patch_size=self.patch_size,
            heatmap_size=self.heatmap_size,
        )
        self.decoder = _Lookup({_key(emb): heatmap for emb, heatmap, _, _ in data})


class PerfectSegmentation(seg.SegmentationUpsampling):
    def fit(self, shot_features, shot_labels, shot_coordinates, shot_ids, **kwargs):
        classes = int(max(np.max(label) for label in shot_labels)) + 1
        data = construct_segmentation_labels(
            shot_coordinates,
            shot_features,
            shot_ids,
            labels=shot_labels,
            patch_size=self.patch_size,
        )
        targets = {}
        for emb, mask, _, _ in data:
            mask = np.asarray(mask, dtype=np.int64)
            targets[_key(emb)] = np.eye(classes, dtype=np.float32)[mask].transpose(2, 0, 1)
        self.decoder = _Lookup(targets)


def _slide_slug(case_input: Path) -> str:
    values = json.loads((case_input / "inputs.json").read_text())
    for value in values:
        socket = value.get("socket") or value["interface"]
        if socket["kind"] == "Image":
            return socket["slug"]
    raise SystemExit(f"{case_input}: no Image input")


def _layout(task: str, task_type: str, work: Path, cases: list[tuple[Path, Path]]) -> list[dict]:
    """The evaluation container's /input and /opt/ml/input/data/ground_truth, and each output's
    patches (or None) for writing labels."""
    inputs, truth = work / "input", work / "ground_truth"
    slug_out = io.MODEL_OUTPUT_SLUG_DICT[task]
    rel = f"{slug_out}.json"
    jobs, rows, read = [], [], []
    for i, (case_input, case_output) in enumerate(cases):
        slug = _slide_slug(case_input)
        for split in ("shot", "case"):
            case_id = f"{split}{i}"
            job_out = inputs / f"job-{case_id}" / "output"
            job_out.mkdir(parents=True)
            shutil.copy(case_output / rel, job_out / rel)
            jobs.append(
                {
                    "pk": f"job-{case_id}",
                    "inputs": [{"image": {"name": f"{case_id}.tif"}, "interface": {"slug": slug}}],
                    "outputs": [{"interface": {"slug": slug_out, "relative_path": rel}}],
                }
            )
            rows.append(f"{case_id},{task},{task_type},vision,pathology,{split}")
        read.append(json.loads((case_output / rel).read_text())[0])
    (inputs / "predictions.json").write_text(json.dumps(jobs))
    truth.mkdir()
    (truth / "mapping.csv").write_text(
        "case_id,task_name,task_type,modality,domain,split\n" + "\n".join(rows) + "\n"
    )
    io.GROUNDTRUTH_DIRECTORY = truth
    for module in list(sys.modules.values()):  # each adaptor module imported its own copy
        if (getattr(module, "__name__", "") or "").startswith("unicorn_eval") and hasattr(
            module, "INPUT_DIRECTORY"
        ):
            module.INPUT_DIRECTORY = inputs
    return read


def _write_labels(task: str, task_type: str, work: Path, outputs: list[dict]) -> None:
    truth = work / "ground_truth" / task
    label_name = io.LABEL_SLUG_DICT[task]
    for i, out in enumerate(outputs):
        for case_id in (f"shot{i}", f"case{i}"):
            folder = truth / case_id
            folder.mkdir(parents=True, exist_ok=True)
            if task_type == "classification":
                (folder / label_name).write_text(json.dumps(i))
                continue
            size = out["meta"]["patch-size"][0]
            coords = [p["coordinates"] for p in out["patches"]]
            if task_type == "detection":  # a cell at the centre of every other patch
                points = [{"point": [x + size // 2, y + size // 2, 0]} for x, y in coords[::2]]
                (folder / label_name).write_text(json.dumps({"points": points}))
                continue
            width, height = out["meta"]["image-size"]
            label = np.zeros((height, width, 3), np.uint8)
            for k, (x, y) in enumerate(coords):  # each patch its own class, 1-3
                label[y : y + size, x : x + size] = k % 3 + 1
            path = folder / label_name.replace("{case_id}", case_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, label, tile=(256, 256), photometric="rgb")


def _processed(case_ids: list[str]) -> list[dict]:
    return [io.process(job) for job in io.read_inputs(io.INPUT_DIRECTORY, case_ids)]


def _wrong(task_type: str, predictions: list, labels) -> list:
    if task_type == "classification":
        return list(np.roll(np.asarray(predictions), 1))
    if task_type == "detection":
        return [[[x + 100.0, y + 100.0] for x, y in case] for case in predictions]
    return [np.where(mask > 0, mask % 3 + 1, 0) for mask in predictions]  # classes swapped


def main(task: str, work: Path, cases: list[tuple[Path, Path]]) -> None:
    task_type = {
        "adaptor-pathology-classification": "classification",
        "adaptor-pathology-detection": "detection",
        "adaptor-pathology-segmentation": "segmentation",
    }[_adaptor_slug(task)]
    outputs = _layout(task, task_type, work, cases)
    _write_labels(task, task_type, work, outputs)
    shot_ids = [f"shot{i}" for i in range(len(cases))]
    case_ids = [f"case{i}" for i in range(len(cases))]

    shots = utils.extract_embeddings_and_labels(_processed(shot_ids), task)
    if task_type == "classification":
        adaptor = utils.get_adaptor(
            adaptor_name="1-nn-weighted",
            task_type=task_type,
            num_shots=len(shot_ids),
            feature_grid_resolution=shots["feature_grid_resolution"],
            global_patch_size=shots["global_patch_size"],
            global_patch_spacing=shots["global_patch_spacing"],
            return_probabilities=False,  # REQUIRES_PROBABILITIES_DICT: False for Task01, 04
        )
        embeddings = shots["embeddings"]
        if embeddings.ndim > 2:
            embeddings = embeddings.squeeze(1)
    elif task_type == "detection":
        adaptor = PerfectDensityMap(global_patch_size=shots["global_patch_size"][0])
        embeddings = shots["embeddings"]
    else:
        adaptor = PerfectSegmentation(
            global_patch_size=shots["global_patch_size"][0],
            global_patch_spacing=shots["global_patch_spacing"][0],
        )
        embeddings = shots["embeddings"]
    adaptor.fit(
        shot_features=embeddings,
        shot_labels=shots["labels"],
        shot_ids=shots["ids"],
        shot_coordinates=shots["coordinates"],
    )
    tests = utils.extract_labels(_processed(case_ids), task)
    predictions = adaptor.predict(tests["ids"])
    perfect = utils.evaluate_predictions(task, tests["ids"], predictions, tests["labels"])
    wrong = utils.evaluate_predictions(
        task, tests["ids"], _wrong(task_type, predictions, tests["labels"]), tests["labels"]
    )
    print(
        json.dumps(
            {
                "task_type": task_type,
                "metric": utils.METRIC_DICT[task]["name"],
                "perfect": float(next(iter(perfect["metrics"].values()))),
                "wrong": float(next(iter(wrong["metrics"].values()))),
                "cases": len(tests["ids"]),
                "embeddings_shapes": [list(np.asarray(e).shape) for e in shots["embeddings"]],
                "patch_size": shots["global_patch_size"],
                "patch_spacing": shots["global_patch_spacing"],
            }
        )
    )


def _adaptor_slug(task: str) -> str:
    # evaluate.ADAPTOR_SLUGS_DICT (not importable, see the docstring), for the tasks checked
    slugs = {
        "Task01_classifying_he_prostate_biopsies_into_isup_scores": "classification",
        "Task04_predicting_slide_level_tumor_proportion_score_in_ihc_stained_wsi": "classification",
        "Task05_detecting_signet_ring_cells_in_he_stained_wsi_of_gastric_cancer": "detection",
        "Task08_detecting_mitotic_figures_in_breast_cancer_wsis": "detection",
        "Task09_segmenting_rois_in_breast_cancer_wsis": "segmentation",
    }
    return f"adaptor-pathology-{slugs[task]}"


if __name__ == "__main__":
    pairs = [tuple(Path(p) for p in arg.split(":", 1)) for arg in sys.argv[3:]]
    main(sys.argv[1], Path(sys.argv[2]), pairs)
