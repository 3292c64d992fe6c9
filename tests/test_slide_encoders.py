"""Pretrained slide encoders: the registry, the pairing and missing-weights refusals (one
line, the CLI's exit code), the run identity, and `pathssl embed` end to end on the CMU
slide with random-weight slide encoders from a local folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pathssl.aggregation.local_weights import weight_file
from pathssl.aggregation.registry import (
    SLIDE_ENCODERS,
    get_slide_encoder,
    pairing_problem,
    slide_encoder_names,
)
from pathssl.errors import ModelBundleError, PathsslError


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """`pathssl ARGS` in this process (a fresh interpreter per call costs ~15 s here): the
    exit code, stdout and the lines the CLI printed as errors."""
    from pathssl.cli import main

    def run(*args: str) -> tuple[int, str, list[str]]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return (
            code,
            out,
            [line for line in err.splitlines() if "Traceback" in line or line.startswith("error")],
        )

    return run


@pytest.fixture(scope="module")
def conch_like_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained bundle named like CONCH v1.5: 768-d, tiles of 256 um (32 px at 8 um/px)
    as TITAN's and FEATHER's 512 px at 0.5 um/px; CMU gives ~15 tiles."""
    from pathssl.encoder.export import random_bundle

    out = tmp_path_factory.mktemp("conch_like")
    random_bundle(
        out, "test_resnet", 32, 8.0, timm_kwargs={"num_classes": 768}, name="conch_v1_5", seed=0
    )
    return out


def _write_weights(name: str, folder: Path, prefix: str = "") -> torch.nn.Module:
    """Random weights of preset `name` in its published file name (and key prefix); returns
    the model they came from."""
    from safetensors.torch import save_file

    preset = get_slide_encoder(name)
    torch.manual_seed(1)
    model = preset.build().eval()
    state = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / preset.weight_files[0])
    return model


@pytest.fixture(scope="module")
def feather_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feather")
    _write_weights("feather", folder, prefix="model.")
    return folder


def test_registry_lists_every_preset_with_what_it_needs() -> None:
    names = slide_encoder_names()
    assert {"titan", "feather"} <= set(names) and names == sorted(SLIDE_ENCODERS)
    for preset in SLIDE_ENCODERS.values():
        assert preset.tile_encoders and preset.weight_files and preset.download
        assert preset.tile_size_px > 0 and 0 < preset.target_mpp < 10
        assert preset.tile_embedding_dim > 0 and preset.embedding_dim > 0
    with pytest.raises(PathsslError) as err:
        get_slide_encoder("titanic")
    assert "\n" not in str(err.value) and "titan" in str(err.value)


def test_pairing_by_name_dimension_and_tile_side() -> None:
    titan = get_slide_encoder("titan")
    assert pairing_problem(titan, "conch_v1_5", 768, 448, 0.5 * 512 / 448) is None
    assert pairing_problem(titan, "conch_v1_5", 768, 512, 0.5) is None
    assert "conch_v1_5" in pairing_problem(titan, "uni", 1024, 224, 0.5)
    assert pairing_problem(titan, "conch_v1_5", 768, 448, 0.5)  # 224 um, not 256
    assert pairing_problem(titan, "conch_v1_5", 512, 512, 0.5)  # wrong width


def test_embed_refuses_a_mismatched_tile_encoder(
    cli, cmu_slide: Path, tiny_bundle_dir: Path, feather_weights: Path, tmp_path: Path
) -> None:
    code, _, errors = cli(
        *("embed", str(cmu_slide), "-o", str(tmp_path), "--model", str(tiny_bundle_dir)),
        *("--slide-encoder", "feather", "--slide-encoder-weights", str(feather_weights)),
    )
    assert code == 2 and len(errors) == 1
    assert "slide encoder feather needs conch_v1_5 tiles (768-d) of 512 px at 0.5 mpp" in errors[0]
    assert "32 px, 2 mpp (64 um)" in errors[0]


def test_missing_weights_name_the_file_and_where_to_get_it(
    cli, cmu_slide: Path, conch_like_dir: Path, tmp_path: Path
) -> None:
    code, _, errors = cli(
        *("embed", str(cmu_slide), "-o", str(tmp_path / "o"), "--model", str(conch_like_dir)),
        *("--slide-encoder", "titan", "--slide-encoder-weights", str(tmp_path)),
    )
    assert code == 2 and len(errors) == 1
    assert "model.safetensors not found" in errors[0]
    assert "huggingface.co/MahmoodLab/TITAN" in errors[0]
    with pytest.raises(ModelBundleError, match=r"put model\.safetensors from https://"):
        weight_file(tmp_path, "model.safetensors", "titan", get_slide_encoder("titan").download)


def test_identity_digest_changes_with_the_slide_encoder(
    cmu_slide: Path, conch_like_dir: Path, feather_weights: Path, tmp_path: Path
) -> None:
    from pathssl.embed.identity import run_identity
    from pathssl.embed.inputs import SlideInput
    from pathssl.embed.options import EmbedOptions
    from pathssl.encoder.bundle import load_bundle

    bundle, slide = load_bundle(conch_like_dir), SlideInput(cmu_slide, cmu_slide.stem)
    mean = EmbedOptions()
    feather = EmbedOptions(slide_encoder="feather", slide_encoder_weights=feather_weights)

    def digest(options: EmbedOptions, sha: str | None) -> str:
        return run_identity(slide, bundle, options, aggregator_sha256=sha, numerics="cpu")["digest"]

    assert (
        "slide_encoder"
        not in run_identity(slide, bundle, mean, aggregator_sha256=None, numerics="cpu")["options"]
    )  # identities made before slide encoders are unchanged
    assert digest(mean, None) != digest(feather, "a" * 64)
    assert digest(feather, "a" * 64) != digest(feather, "b" * 64)  # other weights
    elsewhere = shutil.copytree(feather_weights, tmp_path / "elsewhere")
    moved = replace(feather, slide_encoder_weights=elsewhere)
    assert digest(feather, "a" * 64) == digest(moved, "a" * 64)  # same files elsewhere


def _slide_embedding(out: Path) -> np.ndarray:
    record = json.loads((out / "image-neural-representation.json").read_text())
    return np.array(record[0]["features"], np.float32)


def test_embed_with_feather_end_to_end(
    cli, cmu_slide: Path, conch_like_dir: Path, feather_weights: Path, tmp_path: Path
) -> None:
    """The written slide embedding is FEATHER's forward on the written tile features; a second
    run reuses it."""
    args = ("embed", str(cmu_slide), "-o", str(tmp_path), "--model", str(conch_like_dir))
    chosen = ("--slide-encoder", "feather", "--slide-encoder-weights", str(feather_weights))
    code, _, errors = cli(*args, *chosen)
    assert code == 0, errors
    out = tmp_path / cmu_slide.stem
    run = json.loads((out / "run.json").read_text())
    assert run["slide_embedding"]["aggregator"] == "feather"
    assert (
        run["slide_embedding"]["dim"] == 512 and len(run["slide_embedding"]["weights_sha256"]) == 64
    )
    with h5py.File(out / "features.h5") as h5:
        features = h5["features"][:]
    preset = get_slide_encoder("feather")
    model = preset.build().eval()
    preset.load_weights(model, feather_weights)
    with torch.inference_mode():
        expected = model(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(_slide_embedding(out), expected, rtol=1e-5, atol=1e-6)
    assert "0 embedded, 1 reused" in cli(*args, *chosen)[1]


@pytest.fixture(scope="module")
def titan_model_dir(
    tmp_path_factory: pytest.TempPathFactory, conch_like_dir: Path
) -> tuple[Path, torch.nn.Module]:
    """A model directory holding a tile encoder plus slide_encoder/ (as the container's
    /opt/ml/model may): random TITAN weights as published, and the model they came from."""
    model_dir = tmp_path_factory.mktemp("titan_model") / "model"
    shutil.copytree(conch_like_dir, model_dir)
    model = _write_weights("titan", model_dir / "slide_encoder", prefix="vision_encoder.")
    (model_dir / "slide_encoder" / "slide_encoder.json").write_text('{"preset": "titan"}')
    return model_dir, model


def test_model_directory_with_titan_inside(
    cli, cmu_slide: Path, titan_model_dir: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    """TITAN's embedding of the written features at their level-0 coords and grid step."""
    model_dir, model = titan_model_dir
    code, _, errors = cli("embed", str(cmu_slide), "-o", str(tmp_path), "--model", str(model_dir))
    assert code == 0, errors
    out = tmp_path / cmu_slide.stem
    assert json.loads((out / "run.json").read_text())["slide_embedding"]["aggregator"] == "titan"
    with h5py.File(out / "features.h5") as h5:
        features, coords = h5["features"][:], h5["coords"][:]
        step = int(h5.attrs["patch_size_level0"])
    with torch.inference_mode():
        expected = model(torch.from_numpy(features), torch.from_numpy(coords), step).numpy()
    assert len(features) > 4 and step > 500  # 256 um tiles on a 0.5 um/px slide
    np.testing.assert_allclose(_slide_embedding(out), expected, rtol=1e-5, atol=1e-5)


def test_container_job_writes_the_slide_encoders_embedding(
    capsys: pytest.CaptureFixture,
    cmu_slide: Path,
    titan_model_dir: tuple[Path, torch.nn.Module],
    tmp_path: Path,
) -> None:
    """A Grand-Challenge job (inputs.json) with that model directory: image-neural-representation
    is TITAN's embedding of the tiles in patch-neural-representation."""
    from pathssl.grand_challenge.run import main

    model_dir, model = titan_model_dir
    job = tmp_path / "input"
    (job / "images" / "whole-slide-image").mkdir(parents=True)
    shutil.copy(cmu_slide, job / "images" / "whole-slide-image" / "s.svs")
    socket = {"slug": "whole-slide-image", "kind": "Image", "super_kind": "Image"}
    socket["relative_path"] = "images/whole-slide-image"
    (job / "inputs.json").write_text(json.dumps([{"interface": socket, "image": {"pk": "x"}}]))
    out = tmp_path / "output"
    assert main(["--input", str(job), "--output", str(out), "--model", str(model_dir)]) == 0
    assert "slide embedding (image-neural-representation): titan" in capsys.readouterr().out
    run = json.loads((out / "pathssl-run-record.json").read_text())
    patches = json.loads((out / "patch-neural-representation.json").read_text())[0]["patches"]
    features = torch.tensor([p["features"] for p in patches], dtype=torch.float32)
    coords = torch.tensor([p["coordinates"][:2] for p in patches], dtype=torch.int64)
    with torch.inference_mode():
        expected = model(features, coords, run["tiling"]["stride_level0_px"]).numpy()
    assert run["slide_embedding"]["aggregator"] == "titan"
    np.testing.assert_allclose(_slide_embedding(out), expected, rtol=1e-4, atol=1e-5)


def test_tiles_beyond_a_slide_encoders_cap_are_left_out_evenly() -> None:
    """features.h5 keeps every tile; the slide encoder gets max_tiles of them, spread evenly."""
    from pathssl.embed.aggregation import (
        MeanPooling,
        PretrainedSlideEncoder,
        aggregate,
        tiles_taken,
    )
    from pathssl.tiles.grid import TileGrid

    seen = {}

    def encode(model, features, coords, step):
        seen.update(n=len(features), coords=coords.numpy(), step=step)
        return features.mean(dim=0)

    preset = replace(get_slide_encoder("feather"), max_tiles=5, encode=encode)
    encoder = PretrainedSlideEncoder(preset, torch.nn.Identity(), "0" * 64, "cpu")
    rc = np.stack([np.arange(12) // 4, np.arange(12) % 4], axis=1)
    grid = TileGrid(0, 0.5, 512, 512, 512, 0.5, (3, 4), rc, np.ones(12))
    features = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    embedding = aggregate(encoder, features, grid)
    assert seen["n"] == 5 and seen["step"] == 512
    np.testing.assert_array_equal(seen["coords"][[0, -1]], [[0, 0], [3 * 512, 2 * 512]])
    assert embedding.shape == (3,)
    assert tiles_taken(encoder, 12) == 5 and tiles_taken(encoder, 4) == 4  # in run.json
    assert tiles_taken(MeanPooling(), 12) == 12


def test_the_docs_table_names_every_preset_and_its_files() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "slide-encoders.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines() if "| `" in line}
    for name, preset in SLIDE_ENCODERS.items():
        assert name in rows, f"docs/slide-encoders.md has no row for {name}"
        for file_name in preset.weight_files:
            assert f"`{file_name}`" in rows[name]
        assert f"`{preset.tile_encoders[0]}`" in rows[name] and preset.licence in rows[name]
        assert f"{preset.tile_size_px} px at {preset.target_mpp:g} µm/px" in rows[name]
