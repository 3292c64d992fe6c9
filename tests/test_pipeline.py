"""`embed_slide`/`embed_slides` end to end on real slides: the content of every output."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_slide
from PIL import Image

from pathssl.embed import EmbedOptions, OutputLayout, embed_slide, embed_slides
from pathssl.errors import PathsslError, SlideReadError
from pathssl.slide import open_slide

OPTS = EmbedOptions(num_workers=0, batch_size=16)


@pytest.fixture(scope="module")
def cmu_out(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path, tiny_bundle) -> Path:
    out = tmp_path_factory.mktemp("cmu") / "cmu"
    embed_slide(cmu_slide, out, tiny_bundle, OPTS)
    return out


def _load(out: Path) -> tuple[dict, list, dict, np.ndarray, np.ndarray]:
    run = json.loads((out / "run.json").read_text())
    slide_json = json.loads((out / "image-neural-representation.json").read_text())
    patch_json = json.loads((out / "patch-neural-representation.json").read_text())
    with h5py.File(out / "features.h5") as h5:
        feats, coords = h5["features"][:], h5["coords"][:]
    return run, slide_json, patch_json[0], feats, coords


def test_schemas(cmu_out: Path, tiny_bundle) -> None:
    run, slide_json, patch, feats, coords = _load(cmu_out)
    dim = tiny_bundle.config.embedding_dim
    assert isinstance(slide_json, list) and len(slide_json) == 1
    assert set(slide_json[0]) == {"title", "features"}
    assert slide_json[0]["title"] == "CMU-1-Small-Region.svs"
    assert len(slide_json[0]["features"]) == dim
    assert set(patch) == {"title", "meta", "patches"}
    # UNICORN's meaning (see outputs/unicorn.py): everything in level-0 pixels, microns.
    # 32 px at 2 um/px read as round(32 * 2 / 0.499) = 128 px of level 0.
    assert patch["meta"] == {
        "patch-size": [128, 128],
        "patch-spacing": [0.499, 0.499],
        "image-size": [2220, 2967],
        "image-spacing": [0.499, 0.499],
        "image-origin": [0.0, 0.0],
        "image-direction": [1.0, 0.0, 0.0, 1.0],
        "feature-grid-resolution": [1, 1],
    }
    assert run["model"]["weights_sha256"] == tiny_bundle.weights_sha256
    assert run["slide"]["file"] == "CMU-1-Small-Region.svs"
    assert "/" not in json.dumps(run["slide"]) + json.dumps(run["model"])  # no host paths
    assert all(set(p) == {"coordinates", "features"} for p in patch["patches"])
    assert run["status"] == "complete" and run["model"]["trained"] is False
    assert run["resolution"] == {"mpp": 0.499, "source": "openslide.mpp-x/y (aperio)"}
    assert run["tiling"]["tiles"] == len(patch["patches"]) == len(feats) == len(coords)


def test_features_coordinates_and_aggregation(cmu_out: Path) -> None:
    run, slide_json, patch, feats, coords = _load(cmu_out)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    assert feats.std(axis=0).max() > 0  # tiles differ
    json_coords = np.array([p["coordinates"] for p in patch["patches"]])
    np.testing.assert_array_equal(json_coords, coords)
    np.testing.assert_array_equal(
        np.array([p["features"] for p in patch["patches"]], np.float32), feats
    )
    assert (coords >= 0).all() and (coords[:, 0] + 128 <= 2220).all()
    assert (coords[:, 1] + 128 <= 2967).all()
    assert (coords % 128 == 0).all()
    np.testing.assert_allclose(slide_json[0]["features"], feats.mean(axis=0), rtol=1e-5, atol=1e-6)
    with h5py.File(cmu_out / "features.h5") as h5:
        assert h5.attrs["mpp"] == pytest.approx(0.499)
        assert h5.attrs["patch_size_level0"] == 128
        assert h5.attrs["model_sha256"] == run["model"]["weights_sha256"]


def test_tiles_lie_in_tissue(cmu_out: Path, cmu_slide: Path) -> None:
    _, _, _, _, coords = _load(cmu_out)
    mask_img = sitk.ReadImage(str(cmu_out / "images/tissue-mask/tissue-mask.mha"))
    mask = sitk.GetArrayFromImage(mask_img).astype(bool)
    spacing_um = mask_img.GetSpacing()[0] * 1000
    assert spacing_um == pytest.approx(0.499 * 16)
    scale = spacing_um / 0.499  # level-0 px per mask px
    for x, y in coords:
        box = mask[int(y / scale) : int((y + 128) / scale), int(x / scale) : int((x + 128) / scale)]
        assert box.mean() >= 0.2
    # and the tiles themselves hold stained pixels, not only glass
    from pathssl.slide import open_slide

    def stained(tile: np.ndarray) -> float:
        tile = tile.astype(float)
        saturation = (tile.max(2) - tile.min(2)) / np.maximum(tile.max(2), 1)
        return float((saturation > 0.15).mean())

    kept = {(int(x), int(y)) for x, y in coords}
    with open_slide(cmu_slide) as slide:
        inside = [stained(slide.read_region(x, y, 0, 128, 128)) for x, y in sorted(kept)]
        outside = [
            stained(slide.read_region(x, y, 0, 128, 128))
            for y in range(0, 2967 - 128, 128)
            for x in range(0, 2220 - 128, 128)
            if (x, y) not in kept
        ]
    assert min(inside) > 0.05
    assert np.median(inside) > 5 * np.median(outside)


def test_feature_map_agrees_with_patch_list(cmu_out: Path) -> None:
    _, _, _, feats, coords = _load(cmu_out)
    image = sitk.ReadImage(str(cmu_out / "images/feature-map/feature-map.mha"))
    fmap = sitk.GetArrayFromImage(image)  # (C, rows, cols)
    assert image.GetNumberOfComponentsPerPixel() == 1
    assert fmap.shape == (feats.shape[1], 2967 // 128, 2220 // 128)
    assert image.GetSpacing()[:2] == pytest.approx((128 * 0.000499, 128 * 0.000499))
    rows, cols = coords[:, 1] // 128, coords[:, 0] // 128
    np.testing.assert_array_equal(fmap[:, rows, cols].T, feats)
    empty = np.ones(fmap.shape[1:], bool)
    empty[rows, cols] = False
    assert (fmap[:, empty] == 0).all()
    assert image.GetMetaData("model_sha256")


def test_preview_is_an_image_of_the_slide(cmu_out: Path, cmu_slide: Path) -> None:
    from pathssl.outputs.preview import GAP_PX, MARGIN_PX

    with Image.open(cmu_out / "preview.png") as im:
        assert im.mode == "RGB"
        preview = np.asarray(im)
    # 2220 x 2967 px at 0.499 um/px: the long side drawn at 1000 px, two panels side by side
    cols = (preview.shape[1] - GAP_PX - 2 * MARGIN_PX) // 2
    assert cols == 748
    header = 30 + 20 * 3  # title and three lines of details
    assert preview.shape[0] == header + 1000 + 56
    slide = preview[header : header + 1000, MARGIN_PX : MARGIN_PX + cols].astype(int)
    with open_slide(cmu_slide) as s:  # the left panel is the slide itself
        truth = np.asarray(
            Image.fromarray(s.read_region(0, 0, 0, 2220, 2967)).resize((cols, 1000))
        ).astype(int)
    green = (slide == (0, 200, 0)).all(axis=2)
    assert green.sum() > 1000  # the tissue outline
    assert np.abs(slide - truth)[~green].mean() < 12
    assert (preview[:header] < 100).all(axis=2).sum() > 500  # the title is written
    footer = preview[header + 1000 :, MARGIN_PX : MARGIN_PX + cols]
    assert ((footer < 60).all(axis=2).sum(axis=1) > 50).any()  # the scale bar


def test_fluorescence_preview_is_legible(tiny_bundle, tmp_path: Path) -> None:
    path = shared_slide("hamamatsu_test3-DAPI-2-387.ndpi")
    embed_slide(path, tmp_path / "f", tiny_bundle, OPTS)
    preview = np.asarray(Image.open(tmp_path / "f" / "preview.png").convert("L"))
    panel = preview[90:-56, 12 : (preview.shape[1] - 40) // 2 + 12]
    # DAPI in blue on black is dark (99th percentile of brightness 73 in the raw thumbnail);
    # stretched and shown in grey, the nuclei are bright
    assert np.percentile(panel, 99) > 200 and np.percentile(panel, 50) < 60


def test_deterministic_byte_identical(cmu_slide: Path, tiny_bundle, tmp_path: Path) -> None:
    """Reading threads (the CPU default), inline reads and worker processes: same bytes."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    embed_slide(cmu_slide, a, tiny_bundle, replace(OPTS, read_threads=3))
    embed_slide(cmu_slide, b, tiny_bundle, replace(OPTS, num_workers=2))
    embed_slide(cmu_slide, c, tiny_bundle, replace(OPTS, read_threads=0))
    for other in (b, c):
        for rel in ("patch-neural-representation.json", "image-neural-representation.json"):
            assert (a / rel).read_bytes() == (other / rel).read_bytes()
        with h5py.File(a / "features.h5") as ha, h5py.File(other / "features.h5") as ho:
            assert ha["features"][:].tobytes() == ho["features"][:].tobytes()


def test_multilevel_fluorescence_slide(tiny_bundle, tmp_path: Path) -> None:
    path = shared_slide("hamamatsu_test3-DAPI-2-387.ndpi")
    run = embed_slide(path, tmp_path / "ndpi", tiny_bundle, OPTS)
    assert run["tissue"]["source"] == "detected-fluorescence"
    assert run["tiling"]["level"] == 3  # 1.83 um/px is the coarsest level not coarser than 2
    assert run["tiling"]["patch_mpp"] == pytest.approx(2.0, rel=0.05)


def test_missing_mpp_then_override(tiny_bundle, tmp_path: Path) -> None:
    path = shared_slide("aperio_jp2k_TCGA-CR-7395-01A-01-TS1.svs")
    with pytest.raises(PathsslError, match="--mpp"):
        embed_slide(path, tmp_path / "a", tiny_bundle, OPTS)
    assert not (tmp_path / "a").exists()
    run = embed_slide(path, tmp_path / "b", tiny_bundle, replace(OPTS, mpp=0.5))
    assert run["resolution"] == {"mpp": 0.5, "source": "override"}


def test_unreadable_region_leaves_nothing(cmu_slide: Path, tiny_bundle, tmp_path: Path) -> None:
    data = bytearray(cmu_slide.read_bytes())
    start = len(data) // 2
    data[start : start + 200_000] = bytes(200_000)  # zero out JPEG tile data mid-file
    broken = tmp_path / "broken.svs"
    broken.write_bytes(bytes(data))
    out = tmp_path / "out"
    for workers in (0, 1):  # from a worker process too, the message stays one line
        with pytest.raises(SlideReadError, match="cannot read region") as err:
            embed_slide(broken, out, tiny_bundle, replace(OPTS, num_workers=workers))
        assert "\n" not in str(err.value) and str(broken) in str(err.value)
        assert not out.exists()


def test_batch_resume_and_failure_isolation(cmu_slide: Path, tiny_bundle, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(cmu_slide, inputs / "good.svs")
    (inputs / "bad.svs").write_text("not a slide")
    out = tmp_path / "out"
    reports = embed_slides([inputs], out, tiny_bundle, OPTS)
    assert [(Path(r.slide).name, r.status) for r in reports] == [
        ("bad.svs", "failed"),
        ("good.svs", "complete"),
    ]
    assert "bad.svs" in reports[0].error
    assert not (out / "bad").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["slides"]] == ["failed", "complete"]
    index = (out / "index.html").read_text()  # the run's page: each slide, its preview
    assert '<img src="good/preview.png"' in index and "bad.svs" in index
    assert "1 embedded, 0 reused (same slide, options and model), 0 skipped" in " ".join(
        index.split()
    )
    mtime = (out / "good" / "run.json").stat().st_mtime_ns
    again = embed_slides([inputs], out, tiny_bundle, OPTS)
    assert [r.status for r in again] == ["failed", "reused"]
    assert (out / "good" / "run.json").stat().st_mtime_ns == mtime
    (out / "good" / "preview.png").unlink()  # incomplete outputs are redone
    assert [r.status for r in embed_slides([inputs], out, tiny_bundle, OPTS)][1] == "complete"


def test_layout_is_configurable(cmu_slide: Path, tiny_bundle, tmp_path: Path) -> None:
    layout = OutputLayout(
        slide_embedding="slide.json",
        patch_embeddings=None,
        feature_map="fm/x.mha",
        tissue_mask=None,
        features_h5=None,
        preview=None,
    )
    embed_slide(cmu_slide, tmp_path, tiny_bundle, replace(OPTS, layout=layout, max_tiles=5))
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["fm/x.mha", "run.json", "slide.json"]


def test_nan_features_are_an_error(cmu_slide: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    from pathssl.encoder.bundle import load_bundle

    bundle = load_bundle(tiny_bundle_dir)
    with __import__("torch").no_grad():
        next(bundle.module.parameters()).fill_(float("nan"))
    with pytest.raises(PathsslError, match="NaN"):
        embed_slide(cmu_slide, tmp_path / "o", bundle, replace(OPTS, max_tiles=4))
    assert not (tmp_path / "o").exists()
