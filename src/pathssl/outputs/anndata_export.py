"""A slide's tiles as AnnData (.h5ad) for scanpy and squidpy: one observation per tile (named
SLIDE_x{X}_y{Y} from its level-0 top-left), the tile features as X (float32), in features.h5
order.

Coordinates follow squidpy's (Visium) convention: obsm["spatial"] holds each tile's centre in
full-resolution (level-0) pixels, uns["spatial"][library_id]["scalefactors"] has
tissue_hires_scalef (image px per level-0 px) and spot_diameter_fullres (the tile side), and
["images"]["hires"] the slide panel of the run's preview.png. The top-left corners that
features.h5 stores are in obs x_l0_px / y_l0_px. Cluster labels and principal components are
those of the QuPath export (obs["cluster"], obsm["X_pca"]).

anndata is needed only here, so it is not in requirements.txt (the container never exports):
without it the export stops with one line saying `pip install anndata==...`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathssl.errors import PathsslError
from pathssl.outputs.preview import GAP_PX, MARGIN_PX
from pathssl.outputs.slide_tiles import SlideTiles
from pathssl.outputs.tile_summary import CLUSTER_RGB, kmeans_labels, principal_components

log = logging.getLogger("pathssl")

ANNDATA_PIN = "anndata==0.12.19"
PREVIEW_FOOTER_PX = 56  # preview.write_preview's layout: header 30 + 20 a caption line
DEFAULT_PCS = 5
DEFAULT_CLUSTERS = 8


def _anndata():
    try:
        import anndata
    except ImportError:
        raise PathsslError(
            f"the AnnData export needs the anndata package: pip install {ANNDATA_PIN}"
        ) from None
    return anndata


def preview_panel(tiles: SlideTiles) -> tuple[np.ndarray, float] | None:
    """(rows, cols, 3) uint8 slide panel of preview.png and its image px per level-0 px; None
    when the run wrote no preview or its layout is not the one expected."""
    rel = (tiles.run.get("outputs") or {}).get("preview")
    if not rel or not (tiles.slide_dir / rel).exists():
        return None
    canvas = np.asarray(Image.open(tiles.slide_dir / rel).convert("RGB"))
    height, width = canvas.shape[:2]
    cols = (width - GAP_PX - 2 * MARGIN_PX) // 2
    w0, h0 = tiles.level0_size_px
    for lines in range(8):  # caption lines
        header = 30 + 20 * lines
        rows = height - PREVIEW_FOOTER_PX - header
        if abs(rows - cols * h0 / w0) <= 2:
            panel = canvas[header : header + rows, MARGIN_PX : MARGIN_PX + cols]
            return np.ascontiguousarray(panel), cols / w0
    log.warning("%s: preview.png's layout is not the expected one; no image in uns", rel)
    return None


def _obs(tiles: SlideTiles, labels: np.ndarray):
    import pandas as pd

    x, y = tiles.coords_l0[:, 0], tiles.coords_l0[:, 1]
    obs = pd.DataFrame(
        {"x_l0_px": x, "y_l0_px": y},
        index=[f"{tiles.name}_x{a}_y{b}" for a, b in zip(x.tolist(), y.tolist(), strict=True)],
    )
    for key, values in tiles.per_tile.items():
        obs[key] = values.astype(np.float32)
    flagged = tiles.qc_flagged()
    if flagged is not None:
        obs["qc_flagged"] = flagged
    k = int(labels.max()) + 1 if len(labels) else 0
    obs["cluster"] = pd.Categorical([str(v) for v in labels], categories=[str(c) for c in range(k)])
    return obs


def _metadata(tiles: SlideTiles) -> dict[str, Any]:
    run, attrs = tiles.run, tiles.h5_attrs
    meta = {
        "slide_file": run["slide"]["file"],
        "slide_path": (run.get("run_identity") or {}).get("slide", {}).get("path"),
        "level0_mpp": tiles.level0_mpp,
        "level0_size_px": list(tiles.level0_size_px),
        "tile_size_level0_px": tiles.tile_size_l0_px,
        "tile_size_px": attrs.get("patch_size"),
        "tile_mpp": attrs.get("patch_mpp"),
        "coordinates": "obsm['spatial']: tile centres, level-0 px; obs x_l0_px/y_l0_px: top-left",
        "model_name": run["model"]["name"],
        "model_weights_sha256": run["model"]["weights_sha256"],
        "run_digest": (run.get("run_identity") or {}).get("digest"),
        "pathssl_version": run.get("pathssl_version"),
        "code_sha256": run.get("code_sha256"),
        "source": str(tiles.slide_dir),
    }
    return {k: v for k, v in meta.items() if v is not None}  # h5ad cannot store None


def slide_anndata(tiles: SlideTiles, n_pcs: int = DEFAULT_PCS, n_clusters: int = DEFAULT_CLUSTERS):
    """The AnnData of one slide (see the module docstring for the layout)."""
    anndata = _anndata()
    labels = kmeans_labels(tiles.features, n_clusters)
    adata = anndata.AnnData(
        X=np.ascontiguousarray(tiles.features, dtype=np.float32), obs=_obs(tiles, labels)
    )
    adata.var_names = [f"feature_{i}" for i in range(tiles.features.shape[1])]
    adata.obsm["spatial"] = tiles.centres_l0.astype(np.float64)
    adata.obsm["X_pca"] = principal_components(tiles.features, n_pcs).astype(np.float32)
    k = len(adata.obs["cluster"].cat.categories)
    adata.uns["cluster_colors"] = [
        "#{:02x}{:02x}{:02x}".format(*CLUSTER_RGB[c % len(CLUSTER_RGB)]) for c in range(k)
    ]
    library: dict[str, Any] = {
        "scalefactors": {"spot_diameter_fullres": float(tiles.tile_size_l0_px)},
        "metadata": {"source": "pathssl"},
    }
    panel = preview_panel(tiles)
    if panel is not None:
        image, scalef = panel
        library["images"] = {"hires": image}
        library["scalefactors"]["tissue_hires_scalef"] = scalef
    adata.uns["spatial"] = {tiles.name: library}
    adata.uns["pathssl"] = _metadata(tiles)
    return adata


def write_h5ad(
    tiles: SlideTiles, path: Path, n_pcs: int = DEFAULT_PCS, n_clusters: int = DEFAULT_CLUSTERS
) -> Path:
    adata = slide_anndata(tiles, n_pcs, n_clusters)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    adata.write_h5ad(tmp)
    tmp.replace(path)
    return path
