"""Microns per pixel: an explicit override, else the slide's metadata, else a clear error."""

from __future__ import annotations

from dataclasses import dataclass

from pathssl.errors import ResolutionError
from pathssl.slide.reader import Slide

# Outside this range a value is a placeholder (72 dpi = 352.8 um/px, 1 mm spacing), not a scan.
PLAUSIBLE_MPP = (0.05, 50.0)
# x and y may differ by rounding in some scanners' headers; more than this is not square pixels.
MAX_ANISOTROPY = 0.02


@dataclass(frozen=True)
class Resolution:
    mpp: float  # level-0 microns per pixel
    source: str  # "override" or the metadata field it was read from


def resolve_mpp(slide: Slide, override_mpp: float | None = None) -> Resolution:
    """Return level-0 microns per pixel; never guess."""
    fix = "pass the scan's resolution with --mpp (e.g. --mpp 0.25 for 40x, 0.5 for 20x)"
    if override_mpp is not None:
        if not PLAUSIBLE_MPP[0] <= override_mpp <= PLAUSIBLE_MPP[1]:
            raise ResolutionError(
                f"{slide.path}: --mpp {override_mpp} is outside {PLAUSIBLE_MPP[0]}-"
                f"{PLAUSIBLE_MPP[1]} microns per pixel; give the level-0 resolution"
            )
        return Resolution(float(override_mpp), "override")
    meta = slide.metadata_mpp
    if meta is None:
        raise ResolutionError(f"{slide.path}: no microns-per-pixel in the metadata; {fix}")
    for value in (meta.mpp_x, meta.mpp_y):
        if not PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1]:
            raise ResolutionError(
                f"{slide.path}: metadata ({meta.source}) says {value:.4g} microns per pixel, "
                f"which is no scanner's resolution; {fix}"
            )
    if abs(meta.mpp_x - meta.mpp_y) > MAX_ANISOTROPY * max(meta.mpp_x, meta.mpp_y):
        raise ResolutionError(
            f"{slide.path}: pixels are not square ({meta.mpp_x:.4g} x {meta.mpp_y:.4g} microns); "
            f"{fix}"
        )
    return Resolution((meta.mpp_x + meta.mpp_y) / 2.0, meta.source)
