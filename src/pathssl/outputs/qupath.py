"""A slide's tiles as a GeoJSON FeatureCollection that QuPath imports (File > Import objects, or
drag and drop), in QuPath's own conventions (qupath-core qupath/lib/io/QuPathTypeAdapters.java):
level-0 pixel coordinates, origin top left; `properties.objectType` "detection" or
"annotation"; `properties.measurements` a flat name -> number map; `properties.classification`
{"name", "color": [r, g, b]} (QuPath reads a classification only with both); `id` a UUID.

One detection per tile (its square, measurements: tissue fraction, tile QC, PC1..PCn, cluster)
classified "cluster K", and the tissue outline as one locked annotation (MultiPolygon)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pathssl.outputs.slide_tiles import SlideTiles
from pathssl.outputs.tile_summary import cluster_rgb, kmeans_labels, principal_components
from pathssl.outputs.tissue_outline import mask_polygons

DEFAULT_PCS = 5
DEFAULT_CLUSTERS = 8
TISSUE_RGB = (0, 200, 0)  # the preview's outline colour
# measurement name -> SlideTiles.per_tile key, in the order QuPath lists them
PER_TILE_MEASUREMENTS = {
    "Tissue fraction": "tissue_fraction",
    "QC ink fraction": "qc_ink_fraction",
    "QC focus": "qc_focus",
}


def object_id(slide: str, kind: str, x: int, y: int) -> str:
    """A UUID fixed by slide, object kind and position: re-exports give the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pathssl:{slide}:{kind}:{x}:{y}"))


def tile_measurements(
    tiles: SlideTiles, n_pcs: int = DEFAULT_PCS, n_clusters: int = DEFAULT_CLUSTERS
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(name -> (N,) float64 measurements, (N,) int cluster labels)."""
    out = {
        name: tiles.per_tile[key]
        for name, key in PER_TILE_MEASUREMENTS.items()
        if key in tiles.per_tile
    }
    flagged = tiles.qc_flagged()
    if flagged is not None:
        out["QC flagged"] = flagged.astype(np.float64)
    pcs = principal_components(tiles.features, n_pcs)
    for i in range(pcs.shape[1]):
        out[f"PC{i + 1}"] = pcs[:, i]
    labels = kmeans_labels(tiles.features, n_clusters)
    out["Cluster"] = labels.astype(np.float64)
    return out, labels


def _tile_feature(tiles: SlideTiles, i: int, values: dict[str, float], label: int) -> dict:
    x, y = (int(v) for v in tiles.coords_l0[i])
    s = tiles.tile_size_l0_px
    ring = [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    return {
        "type": "Feature",
        "id": object_id(tiles.name, "tile", x, y),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "detection",
            "classification": {"name": f"cluster {label}", "color": list(cluster_rgb(label))},
            "measurements": values,
        },
    }


def _tissue_feature(tiles: SlideTiles) -> dict | None:
    if tiles.tissue is None or not tiles.tissue.mask.any():
        return None
    polygons = mask_polygons(tiles.tissue.mask, tiles.tissue.level0_px_per_mask_px)
    area_l0 = float(tiles.tissue.mask.sum()) * np.prod(tiles.tissue.level0_px_per_mask_px)
    return {
        "type": "Feature",
        "id": object_id(tiles.name, "tissue", 0, 0),
        "geometry": {"type": "MultiPolygon", "coordinates": polygons},
        "properties": {
            "objectType": "annotation",
            "name": "Tissue",
            "classification": {"name": "Tissue", "color": list(TISSUE_RGB)},
            "isLocked": True,
            "measurements": {
                "Area um^2": area_l0 * tiles.level0_mpp**2,
                "Tiles": float(len(tiles.coords_l0)),
            },
            "metadata": {"tissue source": str(tiles.tissue.source)},
        },
    }


def qupath_geojson(
    tiles: SlideTiles, n_pcs: int = DEFAULT_PCS, n_clusters: int = DEFAULT_CLUSTERS
) -> dict[str, Any]:
    """The FeatureCollection: the tissue annotation first, then one detection per tile in
    features.h5 order."""
    measures, labels = tile_measurements(tiles, n_pcs, n_clusters)
    features = []
    tissue = _tissue_feature(tiles)
    if tissue is not None:
        features.append(tissue)
    for i in range(len(tiles.coords_l0)):
        values = {name: float(v[i]) for name, v in measures.items()}
        features.append(_tile_feature(tiles, i, values, int(labels[i])))
    return {"type": "FeatureCollection", "features": features}


def write_qupath_geojson(
    tiles: SlideTiles, path: Path, n_pcs: int = DEFAULT_PCS, n_clusters: int = DEFAULT_CLUSTERS
) -> Path:
    collection = qupath_geojson(tiles, n_pcs, n_clusters)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    # allow_nan=False: QuPath's reader takes numbers; a NaN would be invalid JSON
    tmp.write_text(json.dumps(collection, allow_nan=False, separators=(",", ":")))
    tmp.replace(path)
    return path
