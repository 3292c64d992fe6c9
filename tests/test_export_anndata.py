"""`pathssl export-tiles anndata`: the .h5ad read back with the real `anndata.read_h5ad` and
given, unedited, to real squidpy functions (spatial graph, neighbourhood enrichment, Moran's I,
the spatial scatter plot on the slide image)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from pathssl.cli import main
from pathssl.embed.options import EmbedOptions
from pathssl.embed.slide import embed_slide
from pathssl.outputs.tile_summary import kmeans_labels, principal_components

anndata = pytest.importorskip("anndata", reason="requirements-dev.txt installs anndata")


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path, tiny_bundle) -> Path:
    """One embedded slide with every output (tiny model: ~90 tiles of 32 px at 2 um/px)."""
    out = tmp_path_factory.mktemp("anndata") / cmu_slide.stem
    options = EmbedOptions(num_workers=0, batch_size=32, device="cpu", engine="pytorch")
    embed_slide(cmu_slide, out, tiny_bundle, options)
    return out


@pytest.fixture(scope="module")
def h5ad_path(slide_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("h5ad")
    assert main(["export-tiles", "anndata", str(slide_dir.parent), "--output", str(out)]) == 0
    return out / f"{slide_dir.name}.h5ad"


def test_read_back_matches_features_h5(slide_dir: Path, h5ad_path: Path) -> None:
    adata = anndata.read_h5ad(h5ad_path)
    run = json.loads((slide_dir / "run.json").read_text())
    with h5py.File(slide_dir / "features.h5") as h5:
        features, coords = h5["features"][()], h5["coords"][()]
        side = int(h5.attrs["patch_size_level0"])
    assert adata.X.dtype == np.float32 and np.array_equal(adata.X, features)
    assert adata.n_obs == run["tiling"]["tiles"]
    assert list(adata.obs_names) == [f"{slide_dir.name}_x{x}_y{y}" for x, y in coords]
    assert np.array_equal(adata.obs[["x_l0_px", "y_l0_px"]].to_numpy(), coords)
    np.testing.assert_array_equal(adata.obsm["spatial"], coords + side / 2)  # tile centres
    width, height = run["slide"]["dimensions_px"]
    assert (adata.obsm["spatial"] > 0).all()
    assert (adata.obsm["spatial"] < [width, height]).all()
    np.testing.assert_allclose(
        adata.obsm["X_pca"], principal_components(features, 5), rtol=1e-5, atol=1e-4
    )
    assert np.array_equal(adata.obs["cluster"].astype(int), kmeans_labels(features, 8))
    assert {"tissue_fraction", "qc_ink_fraction", "qc_focus", "qc_flagged"} <= set(adata.obs)
    assert np.isfinite(adata.obs["tissue_fraction"]).all()
    meta = adata.uns["pathssl"]
    assert meta["model_weights_sha256"] == run["model"]["weights_sha256"]
    assert meta.get("run_digest") == (run.get("run_identity") or {}).get("digest")
    assert meta["level0_mpp"] == pytest.approx(run["resolution"]["mpp"])
    assert meta["slide_file"] == run["slide"]["file"]


def test_squidpy_accepts_it_unedited(slide_dir: Path, h5ad_path: Path, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import squidpy as sq

    adata = anndata.read_h5ad(h5ad_path)
    library = adata.uns["spatial"][slide_dir.name]
    assert library["images"]["hires"].shape[2] == 3
    assert set(library["scalefactors"]) >= {"tissue_hires_scalef", "spot_diameter_fullres"}

    sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=4)
    graph = adata.obsp["spatial_connectivities"]
    dist = adata.obsp["spatial_distances"]
    side = library["scalefactors"]["spot_diameter_fullres"]
    assert graph.shape == (adata.n_obs, adata.n_obs) and graph.nnz > 0
    assert dist.data.min() == pytest.approx(side)  # grid neighbours one tile apart

    sq.gr.nhood_enrichment(
        adata, cluster_key="cluster", n_perms=20, seed=0, show_progress_bar=False
    )
    zscore = adata.uns["cluster_nhood_enrichment"]["zscore"]
    k = len(adata.obs["cluster"].cat.categories)
    assert zscore.shape == (k, k)

    sq.gr.spatial_autocorr(adata, mode="moran", genes=list(adata.var_names[:4]), n_perms=None)
    assert np.isfinite(adata.uns["moranI"]["I"]).all()

    sq.pl.spatial_scatter(adata, color="cluster", library_id=slide_dir.name, shape=None)
    matplotlib.pyplot.savefig(tmp_path / "scatter.png")
    matplotlib.pyplot.close("all")


def test_preview_panel_is_the_slide(slide_dir: Path, h5ad_path: Path) -> None:
    """The image in uns is the slide panel of preview.png: its scale maps level-0 px onto it,
    and tiles (on tissue) sit on darker pixels than the slide's empty background."""
    adata = anndata.read_h5ad(h5ad_path)
    library = adata.uns["spatial"][slide_dir.name]
    image = library["images"]["hires"].astype(float).mean(axis=2)
    scalef = library["scalefactors"]["tissue_hires_scalef"]
    width, height = adata.uns["pathssl"]["level0_size_px"]
    assert image.shape[1] == pytest.approx(width * scalef, abs=1)
    assert image.shape[0] == pytest.approx(height * scalef, abs=2)
    xy = np.round(adata.obsm["spatial"] * scalef).astype(int)
    on_tiles = image[xy[:, 1], xy[:, 0]].mean()
    assert on_tiles < np.percentile(image, 90) - 20


def test_missing_anndata_is_one_line(slide_dir: Path, monkeypatch, capsys) -> None:
    import builtins

    real_import = builtins.__import__

    def no_anndata(name, *args, **kwargs):
        if name == "anndata":
            raise ImportError("no anndata")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_anndata)
    assert main(["export-tiles", "anndata", str(slide_dir), "--output", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install anndata==" in err
