"""`export-tiles`: an embedded slide's tiles for QuPath (GeoJSON) or scanpy/squidpy (.h5ad),
read from the output folder of `pathssl embed` (see docs/exports.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = {"qupath": ".geojson", "anndata": ".h5ad"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's command."""
    p = sub.add_parser(
        "export-tiles",
        help="a slide's tiles as QuPath GeoJSON or AnnData (.h5ad)",
        description=__doc__,
    )
    p.add_argument("format", choices=sorted(FORMATS), help="qupath: .geojson; anndata: .h5ad")
    p.add_argument(
        "path",
        type=Path,
        help="a slide's output folder (OUT/SLIDE), or the run folder OUT (every slide, or --slide)",
    )
    p.add_argument("--slide", default=None, help="the slide's folder name inside a run folder")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for SLIDE.geojson / SLIDE.h5ad (default: each slide's own folder)",
    )
    p.add_argument("--pcs", type=int, default=5, help="principal components kept (default: 5)")
    p.add_argument("--clusters", type=int, default=8, help="k-means clusters (default: 8)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathssl.outputs.slide_tiles import load_slide_tiles, slide_dirs

    for slide_dir in slide_dirs(args.path, args.slide):
        tiles = load_slide_tiles(slide_dir)
        folder = args.output or slide_dir
        path = folder / f"{tiles.name}{FORMATS[args.format]}"
        if args.format == "qupath":
            from pathssl.outputs.qupath import write_qupath_geojson

            write_qupath_geojson(tiles, path, args.pcs, args.clusters)
        else:
            from pathssl.outputs.anndata_export import write_h5ad

            write_h5ad(tiles, path, args.pcs, args.clusters)
        print(f"wrote {path} ({len(tiles.coords_l0)} tiles)")
    return 0
