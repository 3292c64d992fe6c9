"""Marker ink on brightfield slides: a per-pixel colour rule, cheap enough for thumbnails and
tiles alike.

Stained tissue lies in a narrow band of hues: H&E from purple (haematoxylin) to pink
(eosin), IHC from blue (haematoxylin counterstain, pale) to brown (DAB). Marker pens sit
outside it, or at its saturated or dark edge (as histolab's pen filters and HistoQC's colour
checks use):

- green, teal and cyan ink: hues from yellow-green to cyan, which no stain produces;
- blue ink: blue hues far more saturated than a haematoxylin counterstain;
- red ink: orange-red hues (eosin is magenta-pink, DAB is brown: both lie either side)
  with a saturation eosin does not reach;
- black ink (and opaque dirt): dark and near-neutral, judged on chroma (brightest minus
  darkest channel), not on HSV saturation: a dark pixel's saturation is a ratio of small
  numbers that a few grey levels of noise or a tint swing from 0.1 to 0.5, and real black
  ink is tinted maroon-purple (CoNSeP's inked margins, about (57, 41, 50): saturation 0.3,
  which the saturation rule this replaced missed). Black ink over tissue keeps the tissue's
  hue but divides its light by about 8: whatever the hue, a brightest channel under 0.12 is
  ink. Dense haematoxylin and DAB-dark nuclei are as dark, but purple or brown, or one
  nucleus wide: on real H&E and IHC (801 images at tile QC's 4 um grid, 31 renderings at
  8 um/px) 12 % and 1.5 % of the pixels darker than 0.3 are as neutral, and none of them in
  a 3 x 3 px seed but one speck of black dirt.

Hue is signed degrees: red 0, yellow 60, green 120, cyan +-180, blue -120, magenta -60.

Strict pixels seed ink only in blobs of at least 3 x 3 px. A stroke's blurred rim and pale
streaks, and its dark pooled or overlapping passes, are weaker evidence than its middle:
pixels that pass a looser version of the rules count as ink where they touch a pixel that
passes the strict one (hysteresis, as in Canny edges), so faint tissue away from ink is never
taken. Where two passes of red ink overlap they pool maroon to purple-grey (histolab's red
pen tile: (92, 34, 53), (82, 51, 72)); the loose dark rule (dark and greyish by chroma) takes
them, with thinner black ink over tissue. Alone, without the stroke around it, such a pooled
patch is as dark and as neutral as dense tissue can be, so a tile wholly inside one does not
read as ink in tile QC; the rendering the tissue mask is detected on always has the stroke.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

GREEN_HUES = (60.0, -165.0)  # hue > 60 or hue < -165: yellow-green through cyan
GREEN_MIN_SATURATION = 0.2
BLUE_HUES = (-165.0, -100.0)
BLUE_MIN_SATURATION = 0.45
RED_HUES = (-15.0, 15.0)
RED_MIN_SATURATION = 0.65
BLACK_MAX_VALUE = 0.3  # of 1.0, the brightest channel ...
BLACK_MAX_CHROMA = 0.1  # ... and near-neutral: brightest minus darkest channel, of 1.0
OPAQUE_MAX_VALUE = 0.12  # darker than any stained section, whatever the hue
# The looser rules, for pixels connected to strict ink.
WEAK_GREEN_MIN_SATURATION = 0.08
WEAK_BLUE_MIN_SATURATION = 0.25
WEAK_RED_HUES = (-18.0, 20.0)
WEAK_RED_MIN_SATURATION = 0.1  # a stroke's pale rim and streaks
WEAK_DARK_RED_HUES = (-40.0, 20.0)  # dark maroon ink; dark haematoxylin lies below -50
WEAK_DARK_RED_MAX_VALUE = 0.45
WEAK_DARK_RED_MIN_SATURATION = 0.4
WEAK_DARK_MAX_VALUE = 0.45  # dark and greyish: pooled red ink, thinner black ink
WEAK_DARK_MAX_CHROMA = 0.14


def channel_max_min(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and smallest of the last axis's 3 channels: the same values as
    a.max(axis=-1) and a.min(axis=-1), element-wise over channel views (4x faster than
    numpy's reduction over a length-3 axis on a 31 Mpx thumbnail)."""
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)


def hue_saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed hue in degrees (red 0), saturation and value in [0, 1] of an (..., 3) uint8 image."""
    a = rgb.astype(np.float32) / 255.0
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    mx, mn = channel_max_min(a)
    d = np.maximum(mx - mn, 1e-6)
    hue = np.where(
        mx == r,
        60.0 * (g - b) / d,
        np.where(mx == g, 60.0 * (b - r) / d + 120.0, 60 * (r - g) / d + 240.0),
    )
    hue = (hue + 180.0) % 360.0 - 180.0
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return hue, sat, mx


def ink_mask(rgb: np.ndarray, grow_px: int = 2) -> np.ndarray:
    """Boolean mask of marker ink in an RGB uint8 image (brightfield), grown by `grow_px`
    so that the blurred rim of a stroke goes with it. A stack (n, H, W, 3) gives (n, H, W),
    each image on its own."""
    batched = rgb.ndim == 4
    # neighbourhoods within an image only, never across the stack
    square = np.ones((1, 3, 3) if batched else (3, 3), bool)
    connect = np.zeros((3, 3, 3), bool) if batched else np.ones((3, 3), bool)
    if batched:
        connect[1] = True
    hue, sat, value = hue_saturation_value(rgb)
    chroma = sat * value  # brightest minus darkest channel, of 1.0
    green_hue = (hue > GREEN_HUES[0]) | (hue < GREEN_HUES[1])
    blue_hue = (hue >= BLUE_HUES[0]) & (hue < BLUE_HUES[1])
    strong = (
        (green_hue & (sat > GREEN_MIN_SATURATION))
        | (blue_hue & (sat > BLUE_MIN_SATURATION))
        | ((hue > RED_HUES[0]) & (hue < RED_HUES[1]) & (sat > RED_MIN_SATURATION))
        | ((value < BLACK_MAX_VALUE) & (chroma < BLACK_MAX_CHROMA))
        | (value < OPAQUE_MAX_VALUE)
    )
    # a stroke is a blob: single strict pixels (a saturated eosin speck) seed nothing
    strong = ndimage.binary_opening(strong, structure=square)
    if not strong.any():
        return strong
    weak = (
        (green_hue & (sat > WEAK_GREEN_MIN_SATURATION))
        | (blue_hue & (sat > WEAK_BLUE_MIN_SATURATION))
        | ((hue > WEAK_RED_HUES[0]) & (hue < WEAK_RED_HUES[1]) & (sat > WEAK_RED_MIN_SATURATION))
        | ((value < WEAK_DARK_MAX_VALUE) & (chroma < WEAK_DARK_MAX_CHROMA))
        | (
            (hue > WEAK_DARK_RED_HUES[0])
            & (hue < WEAK_DARK_RED_HUES[1])
            & (value < WEAK_DARK_RED_MAX_VALUE)
            & (sat > WEAK_DARK_RED_MIN_SATURATION)
        )
    )
    labels, n = ndimage.label(weak | strong, structure=connect)
    touched = np.zeros(n + 1, bool)
    touched[np.unique(labels[strong])] = True
    touched[0] = False
    ink = touched[labels]
    if grow_px > 0:
        ink = ndimage.binary_dilation(ink, structure=square, iterations=grow_px)
    return ink


def ink_fraction(rgb: np.ndarray) -> float:
    """Share of a tile's pixels that are ink (no growing: a per-tile quality measure)."""
    return float(ink_mask(rgb, grow_px=0).mean())
