"""One embedded slide's tiles, read back from its output folder (OUT/SLIDE of `pathssl embed`):
features and level-0 coordinates from features.h5, resolution and identity from run.json,
the tissue mask from its .mha, for the exports (QuPath GeoJSON, AnnData)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pathssl.errors import PathsslError
from pathssl.tissue.detection import TissueMask

FEATURES_H5 = "features.h5"
RUN_JSON = "run.json"
# (N,) datasets of features.h5 read as per-tile measurements, when present
PER_TILE_DATASETS = ("qc_ink_fraction", "qc_focus")


@dataclass(frozen=True)
class SlideTiles:
    slide_dir: Path
    name: str  # the output folder's name: the slide's stem
    coords_l0: np.ndarray  # (N, 2) int64 top-left (x, y) of each tile, level-0 px
    tile_size_l0_px: int  # tile side in level-0 px
    features: np.ndarray  # (N, D) float32
    level0_mpp: float
    level0_size_px: tuple[int, int]  # (width, height)
    run: dict[str, Any]  # run.json
    h5_attrs: dict[str, Any]
    per_tile: dict[str, np.ndarray] = field(default_factory=dict)  # (N,) float measures
    tissue: TissueMask | None = None  # None when the run wrote no tissue mask

    @property
    def centres_l0(self) -> np.ndarray:
        """(N, 2) float64 tile centres (x, y), level-0 px."""
        return self.coords_l0 + self.tile_size_l0_px / 2.0

    def qc_flagged(self) -> np.ndarray | None:
        """(N,) bool, by run.json's tile-QC thresholds (tissue/tile_qc.py's rule)."""
        qc = self.run.get("tile_qc") or {}
        if "qc_focus" not in self.per_tile or "blur_max_focus" not in qc:
            return None
        flagged = self.per_tile["qc_focus"] < qc["blur_max_focus"]
        if qc.get("ink_judged", True) and "qc_ink_fraction" in self.per_tile:
            flagged |= self.per_tile["qc_ink_fraction"] > qc["ink_max_fraction"]
        return flagged


def slide_dirs(path: Path, slide: str | None = None) -> list[Path]:
    """The slide output folders PATH names: itself (OUT/SLIDE), OUT/SLIDE for --slide, or
    every complete slide of a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise PathsslError(f"{path}: no such folder; give the --output folder of `pathssl embed`")
    if slide is not None:
        chosen = path / slide
        if not (chosen / RUN_JSON).exists() and not (chosen / FEATURES_H5).exists():
            found = sorted(p.name for p in path.iterdir() if (p / RUN_JSON).exists())
            raise PathsslError(
                f"{chosen}: no embedded slide '{slide}' in {path} (slides there: "
                f"{', '.join(found) or 'none'}); check --slide"
            )
        return [chosen]
    if (path / FEATURES_H5).exists() or (path / RUN_JSON).exists():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / RUN_JSON).exists())
    if not found:
        raise PathsslError(
            f"{path}: no {RUN_JSON} here nor in its subfolders; give a slide's output folder "
            "(OUT/SLIDE) or the --output folder of `pathssl embed`"
        )
    return found


def load_slide_tiles(slide_dir: Path) -> SlideTiles:
    """Read one slide's outputs; a one-line error names the missing file and the fix."""
    slide_dir = Path(slide_dir)
    run_path, h5_path = slide_dir / RUN_JSON, slide_dir / FEATURES_H5
    if not run_path.exists():
        raise PathsslError(
            f"{run_path} missing: the slide's embedding did not finish; rerun `pathssl embed`"
        )
    run = json.loads(run_path.read_text())
    if not h5_path.exists():
        raise PathsslError(
            f"{h5_path} missing: the run was made without features.h5; rerun `pathssl embed` "
            "with an output layout that writes it"
        )
    with h5py.File(h5_path, "r") as h5:
        for name in ("features", "coords"):
            if name not in h5:
                raise PathsslError(f"{h5_path}: no '{name}' dataset; rerun `pathssl embed`")
        coords = np.asarray(h5["coords"][()], dtype=np.int64)
        features = np.asarray(h5["features"][()], dtype=np.float32)
        attrs = {k: _plain(v) for k, v in h5.attrs.items()}
        per_tile = {n: h5[n][()].astype(np.float64) for n in PER_TILE_DATASETS if n in h5}
    planned = run.get("tiling", {}).get("tiles")
    if len(coords) != len(features) or len(coords) != planned:
        raise PathsslError(
            f"{h5_path}: {len(coords)} coords, {len(features)} feature rows and {planned} "
            "tiles in run.json disagree; rerun `pathssl embed`"
        )
    mpp = float(attrs.get("mpp", run["resolution"]["mpp"]))
    tissue = _tissue_mask(slide_dir, run, mpp)
    if tissue is not None:
        per_tile["tissue_fraction"] = tissue.fractions(
            coords[:, 0], coords[:, 1], int(attrs["patch_size_level0"])
        )
    width, height = (int(v) for v in run["slide"]["dimensions_px"])
    return SlideTiles(
        slide_dir=slide_dir,
        name=slide_dir.name,
        coords_l0=coords,
        tile_size_l0_px=int(attrs.get("patch_size_level0", run["tiling"]["stride_level0_px"])),
        features=features,
        level0_mpp=mpp,
        level0_size_px=(width, height),
        run=run,
        h5_attrs=attrs,
        per_tile=per_tile,
        tissue=tissue,
    )


def _tissue_mask(slide_dir: Path, run: dict[str, Any], level0_mpp: float) -> TissueMask | None:
    """The tissue mask .mha the run wrote, with its level-0 scale (mask mpp / slide mpp, as
    tissue/detection.py made it); None if the layout left it out."""
    rel = (run.get("outputs") or {}).get("tissue_mask")
    if not rel or not (slide_dir / rel).exists():
        return None
    import SimpleITK as sitk

    image = sitk.ReadImage(str(slide_dir / rel))
    mask = sitk.GetArrayFromImage(image).astype(bool)
    mask_mpp = image.GetSpacing()[0] * 1000.0  # written in millimetres
    scale = mask_mpp / level0_mpp
    source = (run.get("tissue") or {}).get("source", "unknown")
    return TissueMask(mask, (scale, scale), mask_mpp, source)


def _plain(value: Any) -> Any:
    """An HDF5 attribute as JSON-able Python."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
