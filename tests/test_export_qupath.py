"""`pathssl export-tiles qupath`: the GeoJSON QuPath imports, checked with a schema-validating
GeoJSON reader (the `geojson` package), jsonschema for QuPath's own conventions (read from
qupath-core qupath/lib/io/QuPathTypeAdapters.java and GsonTools.java, commit e7662d89ec70),
shapely for geometry, and against features.h5 and a recomputation of its numbers. QuPath
itself is a Java desktop application not on PyPI, Debian or npm, so it is not run here."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import geojson
import h5py
import jsonschema
import numpy as np
import pytest
from shapely.geometry import box, shape
from shapely.validation import explain_validity

from pathssl.cli import main
from pathssl.embed.options import EmbedOptions
from pathssl.embed.slide import embed_slide
from pathssl.outputs.tile_summary import kmeans_labels, principal_components
from pathssl.outputs.tissue_outline import mask_polygons

NUMBER = {"type": "number"}
# What QuPath's PathObjectTypeAdapter reads: objectType, a flat measurement map of numbers,
# a classification with both name and colour (else it is not read as a proxy), a UUID id.
QUPATH_FEATURE = {
    "type": "object",
    "required": ["type", "id", "geometry", "properties"],
    "properties": {
        "type": {"const": "Feature"},
        "id": {"type": "string", "format": "uuid"},
        "properties": {
            "type": "object",
            "required": ["objectType", "classification", "measurements"],
            "properties": {
                "objectType": {"enum": ["detection", "annotation"]},
                "classification": {
                    "type": "object",
                    "required": ["name", "color"],
                    "properties": {
                        "name": {"type": "string", "not": {"pattern": ":"}},
                        "color": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0, "maximum": 255},
                            "minItems": 3,
                            "maxItems": 3,
                        },
                    },
                },
                "measurements": {"type": "object", "additionalProperties": NUMBER},
                "isLocked": {"type": "boolean"},
            },
        },
    },
}


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path, tiny_bundle) -> Path:
    """One embedded slide with every output (tiny model: ~90 tiles of 32 px at 2 um/px)."""
    out = tmp_path_factory.mktemp("qupath") / cmu_slide.stem
    options = EmbedOptions(num_workers=0, batch_size=32, device="cpu", engine="pytorch")
    embed_slide(cmu_slide, out, tiny_bundle, options)
    return out


@pytest.fixture(scope="module")
def exported(slide_dir: Path) -> tuple[str, dict]:
    assert main(["export-tiles", "qupath", str(slide_dir)]) == 0
    text = (slide_dir / f"{slide_dir.name}.geojson").read_text()
    return text, json.loads(text)


def _h5(slide_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(slide_dir / "features.h5") as h5:
        return h5["features"][()], h5["coords"][()], dict(h5.attrs)


def test_valid_geojson_and_qupath_conventions(exported: tuple[str, dict]) -> None:
    text, collection = exported
    obj = geojson.loads(text)
    assert isinstance(obj, geojson.FeatureCollection)
    assert obj.is_valid, obj.errors()
    for feature in collection["features"]:
        jsonschema.validate(feature, QUPATH_FEATURE, format_checker=jsonschema.FormatChecker())
        uuid.UUID(feature["id"])
    ids = [f["id"] for f in collection["features"]]
    assert len(set(ids)) == len(ids)
    kinds = [f["properties"]["objectType"] for f in collection["features"]]
    assert kinds[0] == "annotation" and set(kinds[1:]) == {"detection"}


def test_tiles_match_features_h5(slide_dir: Path, exported: tuple[str, dict]) -> None:
    """One detection per features.h5 row, in its order, at its level-0 (x, y), the tile side
    patch_size_level0, inside the slide; measurements finite."""
    _, collection = exported
    features, coords, attrs = _h5(slide_dir)
    run = json.loads((slide_dir / "run.json").read_text())
    width, height = run["slide"]["dimensions_px"]
    side = int(attrs["patch_size_level0"])
    tiles = collection["features"][1:]
    assert len(tiles) == len(coords) == len(features) == run["tiling"]["tiles"]
    slide = box(0, 0, width, height)
    for feature, (x, y) in zip(tiles, coords, strict=True):
        poly = shape(feature["geometry"])
        assert poly.is_valid and poly.bounds == (x, y, x + side, y + side)
        assert slide.contains(poly)
        values = feature["properties"]["measurements"]
        assert all(np.isfinite(v) for v in values.values())
        assert 0.0 <= values["Tissue fraction"] <= 1.0


def test_principal_components_and_clusters_recomputed(
    slide_dir: Path, exported: tuple[str, dict]
) -> None:
    """PC1..PC5 equal scikit-learn's PCA of features.h5 (same sign convention); the cluster
    measurement, classification name and colour agree, and k-means is deterministic."""
    from sklearn.decomposition import PCA

    _, collection = exported
    features, _, _ = _h5(slide_dir)
    tiles = collection["features"][1:]
    got = np.array(
        [[t["properties"]["measurements"][f"PC{i}"] for i in range(1, 6)] for t in tiles]
    )
    want = PCA(n_components=5, svd_solver="full").fit_transform(features.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(got, principal_components(features, 5), rtol=0, atol=1e-9)
    labels = kmeans_labels(features, 8)
    assert np.array_equal(labels, kmeans_labels(features, 8))
    for tile, label in zip(tiles, labels, strict=True):
        props = tile["properties"]
        assert props["measurements"]["Cluster"] == label
        assert props["classification"]["name"] == f"cluster {label}"
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # numbered by size


def test_tissue_annotation_matches_mask_and_tiles(
    slide_dir: Path, exported: tuple[str, dict]
) -> None:
    """The tissue MultiPolygon is valid, covers exactly the mask's pixels (scaled to level 0),
    and each tile's share of it is its Tissue fraction measurement."""
    import SimpleITK as sitk

    _, collection = exported
    tissue = shape(collection["features"][0]["geometry"])
    assert tissue.geom_type == "MultiPolygon" and tissue.is_valid, explain_validity(tissue)
    run = json.loads((slide_dir / "run.json").read_text())
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(slide_dir / run["outputs"]["tissue_mask"])))
    scale = run["tissue"]["mask_mpp"] / run["resolution"]["mpp"]
    assert tissue.area == pytest.approx(mask.sum() * scale**2, rel=1e-3)
    for tile in collection["features"][1:]:
        poly = shape(tile["geometry"])
        share = poly.intersection(tissue).area / poly.area
        assert share == pytest.approx(
            tile["properties"]["measurements"]["Tissue fraction"], abs=0.05
        )
        assert share >= run["tiling"]["min_tissue_fraction"] - 0.05


def test_outline_of_random_masks_is_valid_and_exact() -> None:
    """Pixels touching at corners (both tissue and background) still give valid polygons whose
    area is the mask's."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = rng.random((24, 31)) < rng.uniform(0.3, 0.8)
        polygons = mask_polygons(mask, (2.0, 3.0))
        multi = shape({"type": "MultiPolygon", "coordinates": polygons})
        assert multi.is_valid, explain_validity(multi)
        assert multi.area == pytest.approx(mask.sum() * 6.0)


def test_errors_name_the_file_and_the_fix(slide_dir: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "run" / "slideA"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text((slide_dir / "run.json").read_text())
    assert main(["export-tiles", "qupath", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken / "features.h5") in err and "rerun" in err
    assert main(["export-tiles", "qupath", str(tmp_path / "run"), "--slide", "slideB"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "slideB" in err and "slideA" in err and "--slide" in err
