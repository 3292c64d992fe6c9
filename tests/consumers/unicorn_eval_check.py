"""Run inside unicorn-eval's own environment (see tests/test_unicorn_consumer.py): feed one
pathssl Grand-Challenge output to unicorn-eval's loading and its pathology segmentation adaptor,
as the UNICORN evaluation would, and print what they made of it as JSON.

    python unicorn_eval_check.py PATHSSL_OUTPUT WORK_DIR
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

TASK = "Task09_segmenting_rois_in_breast_cancer_wsis"
INPUT_SLUG = "histopathology-region-of-interest-cropout"
CASE = "case0"


def main(pathssl_output: Path, work: Path) -> None:
    import unicorn_eval.io as io
    from unicorn_eval.adaptors.segmentation.baseline_segmentation_upsampling import main as seg
    from unicorn_eval.adaptors.segmentation.data_handling import construct_segmentation_labels

    record = json.loads((pathssl_output / "pathssl-run-record.json").read_text())
    tiling = record["tiling"]
    # A tile's true extent on the slide, from what was read, not from `meta`.
    extent = round(tiling["tile_size_px"] * tiling["patch_mpp"] / record["resolution"]["mpp"])
    width, height = record["slide"]["dimensions_px"]

    # The evaluation container's layout: predictions.json, one job's outputs, ground truth.
    inputs, truth = work / "input", work / "ground_truth"
    job_out = inputs / "job0" / "output"
    job_out.mkdir(parents=True)
    shutil.copy(pathssl_output / "patch-neural-representation.json", job_out)
    job = {
        "pk": "job0",
        "inputs": [{"image": {"name": f"{CASE}.tif"}, "interface": {"slug": INPUT_SLUG}}],
        "outputs": [
            {
                "interface": {
                    "slug": "patch-neural-representation",
                    "relative_path": "patch-neural-representation.json",
                }
            }
        ],
    }
    (inputs / "predictions.json").write_text(json.dumps([job]))
    truth.mkdir()
    (truth / "mapping.csv").write_text(
        "case_id,task_name,task_type,modality,domain\n"
        f"{CASE},{TASK},segmentation,vision,pathology\n"
    )
    # Labels in level-0 pixels: each tile's true extent painted with its own class.
    coords = np.array(
        [
            p["coordinates"]
            for p in json.loads((pathssl_output / "patch-neural-representation.json").read_text())[
                0
            ]["patches"]
        ]
    )
    label = np.zeros((height, width, 3), np.uint8)
    for i, (x, y) in enumerate(coords):
        label[y : y + extent, x : x + extent] = i + 1
    label_path = truth / TASK / CASE / "images" / "tumor-stroma-and-other" / f"{CASE}.tif"
    label_path.parent.mkdir(parents=True)
    tifffile.imwrite(label_path, label, tile=(256, 256), photometric="rgb")

    io.INPUT_DIRECTORY, io.GROUNDTRUTH_DIRECTORY = inputs, truth
    seg.INPUT_DIRECTORY = inputs
    case = io.process(io.read_inputs(input_dir=inputs, case_names=[CASE])[0])

    patch_size = int(case["patch_size"][0])
    loaded = construct_segmentation_labels(
        [case["coordinates"]],
        [case["embeddings"]],
        [CASE],
        labels=[case["label"]],
        patch_size=patch_size,
    )
    own_tile_only = [bool((mask == i + 1).all()) for i, (_, mask, _, _) in enumerate(loaded)]

    torch.manual_seed(0)
    adaptor = seg.SegmentationUpsampling(
        global_patch_size=patch_size, global_patch_spacing=case["patch_spacing"][0], num_epochs=2
    )
    adaptor.fit(
        shot_features=[case["embeddings"]],
        shot_labels=[case["label"]],
        shot_coordinates=[case["coordinates"]],
        shot_ids=[CASE],
    )
    predicted = adaptor.predict([CASE])[0]
    print(
        json.dumps(
            {
                "true_extent_px": extent,
                "patch_size": case["patch_size"],
                "patch_spacing": case["patch_spacing"],
                "image_size": case["image_size"],
                "image_spacing": case["image_spacing"],
                "feature_grid_resolution": case["feature_grid_resolution"],
                "embeddings_shape": list(case["embeddings"].shape),
                "label_shape": list(case["label"].shape),
                "patches": len(loaded),
                "patches_covering_only_their_tile": sum(own_tile_only),
                "prediction_shape": list(predicted.shape),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
