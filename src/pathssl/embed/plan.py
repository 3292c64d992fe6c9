"""One slide's plan before any tile is read: resolution, tissue, tile grid and preview
(the slide opened once)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathssl.embed.options import EmbedOptions
from pathssl.encoder.bundle import EncoderBundle
from pathssl.outputs.preview import preview_mpp
from pathssl.slide.opening import open_slide
from pathssl.slide.resolution import Resolution, resolve_mpp
from pathssl.tiles.grid import TileGrid, TilingSpec, plan_tiles
from pathssl.tissue.detection import (
    Thumbnail,
    TissueMask,
    detect_tissue,
    load_tissue_mask,
    render_thumbnail,
)

log = logging.getLogger("pathssl")


@dataclass(frozen=True)
class SlidePlan:
    """What embedding a slide needs from the slide file before reading any tile."""

    resolution: Resolution
    tissue: TissueMask
    spec: TilingSpec
    grid: TileGrid
    level_sizes: list[tuple[int, int]]
    downsample: float  # of the level the tiles are read from
    region_decoder: str  # who decodes that level on the CPU (slide.region_decoder)
    preview_image: Thumbnail
    slide_info: dict[str, Any]  # for the run record: a file name, never a host path


def plan_slide(slide_path: Path, bundle: EncoderBundle, options: EmbedOptions) -> SlidePlan:
    """Resolution, tissue, tile grid and preview picture of one slide (opened once)."""
    with open_slide(slide_path) as slide:
        resolution = resolve_mpp(slide, options.mpp)
        thumb = render_thumbnail(slide, resolution.mpp)
        if options.tissue_mask is not None:
            tissue = load_tissue_mask(Path(options.tissue_mask), slide, resolution.mpp)
        else:
            tissue = detect_tissue(thumb, exclude_ink=options.exclude_ink)
        cfg = bundle.config
        spec = TilingSpec(
            target_mpp=cfg.target_mpp,
            tile_size_px=cfg.input_size_px,
            mpp_tolerance=options.mpp_tolerance,
            min_tissue_fraction=options.min_tissue_fraction,
            max_tiles=options.max_tiles,
            max_upscale=None if options.allow_upscale else 2.0,
        )
        grid = plan_tiles(slide.levels, resolution.mpp, tissue, spec, str(slide_path))
        preview_image = thumb
        wanted_mpp = preview_mpp(resolution.mpp, slide.dimensions)
        if options.layout.preview and wanted_mpp < thumb.mpp:  # small slides: a finer picture
            preview_image = render_thumbnail(
                slide, resolution.mpp, target_mpp=wanted_mpp, source_mpp=None
            )
        return SlidePlan(
            resolution=resolution,
            tissue=tissue,
            spec=spec,
            grid=grid,
            level_sizes=[(lv.width, lv.height) for lv in slide.levels],
            downsample=slide.levels[grid.level].downsample,
            region_decoder=slide.region_decoder(grid.level),
            preview_image=preview_image,
            slide_info={
                "file": slide_path.name,
                "backend": slide.backend,
                "vendor": getattr(slide, "vendor", slide.backend),
                "dimensions_px": list(slide.dimensions),
                "levels": len(slide.levels),
            },
        )
