"""The features.h5 pathssl writes opens in the peers' loading code unchanged.

Neither peer is on PyPI as a package that carries these readers (CLAM is a repository of
scripts; TRIDENT's reader sits in a WSI class that needs a slide and its backends), so each
check below replicates, line for line, the reading code of one upstream file at one commit,
and then uses what it read as that code does next:

- CLAM, github.com/mahmoodlab/CLAM at 53e2409d4a8189c682c173382964a85f114f923c:
  dataset_modules/dataset_generic.py, Generic_MIL_Dataset.__getitem__ with use_h5 (the
  h5_files/{slide_id}.h5 layout, `features` and `coords` read whole, features to torch);
  create_heatmaps.py reads the same two datasets.
- TRIDENT, github.com/mahmoodlab/TRIDENT at a91fa8490e0210ebbbe58452c3babe009e0ab7ca:
  trident/wsi_objects/WSI.py, WSI.extract_slide_features (features, coords and
  dict(f['coords'].attrs) into the batch its slide encoders take; TITAN, PRISM's and
  Prov-GigaPath's wrappers in trident/slide_encoder_models/load.py read
  batch['attributes']['patch_size_level0']); trident/IO.py read_coords with the attributes
  WSI.extract_patch_features requires, and trident/wsi_objects/WSIPatcher.py's level-0
  patch side, round(patch_size * (10 / target_mag) / (10 / level0_mag)).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pathssl.embed.options import EmbedOptions
from pathssl.embed.slide import embed_slide


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path, tiny_bundle) -> Path:
    out = tmp_path_factory.mktemp("peers") / cmu_slide.stem
    options = EmbedOptions(num_workers=0, batch_size=32, device="cpu", engine="pytorch")
    embed_slide(cmu_slide, out, tiny_bundle, options)
    return out


def test_clam_generic_mil_dataset_reads_it(slide_dir: Path, tmp_path: Path) -> None:
    """CLAM's bag loader: data_dir/h5_files/{slide_id}.h5 -> (features tensor, label, coords)."""
    data_dir, slide_id = tmp_path / "feats", slide_dir.name
    (data_dir / "h5_files").mkdir(parents=True)
    shutil.copy(slide_dir / "features.h5", data_dir / "h5_files" / f"{slide_id}.h5")

    # --- dataset_generic.py, Generic_MIL_Dataset.__getitem__, use_h5 branch ---
    full_path = os.path.join(data_dir, "h5_files", "{}.h5".format(slide_id))  # noqa: UP032
    with h5py.File(full_path, "r") as hdf5_file:
        features = hdf5_file["features"][:]
        coords = hdf5_file["coords"][:]
    features = torch.from_numpy(features)
    # ---

    run = json.loads((slide_dir / "run.json").read_text())
    assert features.dtype == torch.float32 and features.ndim == 2
    assert features.shape[0] == coords.shape[0] == run["tiling"]["tiles"]
    assert coords.shape == (features.shape[0], 2) and np.issubdtype(coords.dtype, np.integer)
    # CLAM's MIL models take the bag as (N, D) and pool over N
    attention = torch.softmax(torch.zeros(features.shape[0]), 0)
    assert (attention @ features).shape == (features.shape[1],)


def test_trident_extract_slide_features_batch(slide_dir: Path) -> None:
    """TRIDENT's slide-encoder input: coords, features, the coords attributes, with
    patch_size_level0 the tile side in level-0 px (the grid step of the coords)."""
    patch_features_path = slide_dir / "features.h5"

    # --- trident/wsi_objects/WSI.py, WSI.extract_slide_features ---
    with h5py.File(patch_features_path, "r") as f:
        coords = f["coords"][:]
        patch_features = f["features"][:]
        coords_attrs = dict(f["coords"].attrs)
    patch_features = torch.from_numpy(patch_features).float()
    patch_features = patch_features.unsqueeze(0)
    coords = torch.from_numpy(coords)
    if torch.is_floating_point(coords):
        coords = torch.round(coords).to(torch.int64)
    else:
        coords = coords.to(torch.int64)
    coords = coords.unsqueeze(0)
    if "patch_size_level0" in coords_attrs:
        coords_attrs["patch_size_level0"] = int(coords_attrs["patch_size_level0"])
    batch = {"features": patch_features, "coords": coords, "attributes": coords_attrs}
    # ---

    side = batch["attributes"]["patch_size_level0"]
    run = json.loads((slide_dir / "run.json").read_text())
    assert side == run["tiling"]["stride_level0_px"]
    xy = batch["coords"][0].numpy()
    assert (xy % side == 0).all()  # TITAN turns coords // patch_size_level0 into grid indices
    assert batch["features"].shape == (1, run["tiling"]["tiles"], patch_features.shape[2])
    # trident's mean-pool slide encoder: batch['features'].mean(dim=1)
    assert batch["features"].mean(dim=1).shape == (1, patch_features.shape[2])
    with h5py.File(patch_features_path, "r") as f:
        assert f["features"].attrs["encoder"] == f.attrs["model_name"]


def test_trident_read_coords_rebuilds_the_level0_tiles(slide_dir: Path) -> None:
    """TRIDENT's coords reader finds the attributes extract_patch_features requires, and its
    patcher gets back pathssl's level-0 tile side and slide size from them."""
    coords_path = slide_dir / "features.h5"

    # --- trident/IO.py, read_coords ---
    with h5py.File(coords_path, "r") as f:
        attrs = dict(f["coords"].attrs)
        coords = f["coords"][:]
    # --- trident/wsi_objects/WSI.py, extract_patch_features ---
    patch_size = attrs.get("patch_size", None)  # noqa: SIM910 (verbatim)
    level0_magnification = attrs.get("level0_magnification", None)  # noqa: SIM910 (verbatim)
    target_magnification = attrs.get("target_magnification", None)  # noqa: SIM910 (verbatim)
    assert None not in (patch_size, level0_magnification, target_magnification)
    # --- trident/wsi_objects/WSIPatcher.py, WSIPatcher.__init__ ---
    src_pixel_size = 10 / level0_magnification
    dst_pixel_size = 10 / target_magnification
    downsample = dst_pixel_size / src_pixel_size
    patch_size_src = round(patch_size * downsample)
    # ---

    with h5py.File(coords_path, "r") as f:
        ours = dict(f.attrs)
    assert patch_size_src == attrs["patch_size_level0"] == ours["patch_size_level0"]
    assert patch_size == ours["patch_size"]
    assert src_pixel_size == pytest.approx(ours["mpp"]) and dst_pixel_size == pytest.approx(
        ours["patch_mpp"]
    )
    assert [attrs["level0_width"], attrs["level0_height"]] == list(ours["level_dim"])
    assert attrs["overlap"] == 0
    assert (coords[:, 0] + patch_size_src <= attrs["level0_width"]).all()
    assert (coords[:, 1] + patch_size_src <= attrs["level0_height"]).all()
