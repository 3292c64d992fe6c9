"""Samples as a file stores them (any depth, grey or colour, with or without alpha) to the
RGB uint8 the pipeline reads, and to the non-zero mask a tissue mask is read as."""

from __future__ import annotations

import logging

import numpy as np

from pathssl.slide.reader import (
    SampleFormat,
    scale_to_uint8,
)

log = logging.getLogger("pathssl")


def composite_on_white(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """OpenSlide marks unscanned areas transparent; show them as the slide background."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    return (rgb.astype(np.float32) * a + bg * (1.0 - a) + 0.5).astype(np.uint8)


def samples_to_rgb(samples: np.ndarray, fmt: SampleFormat, bits: int) -> np.ndarray:
    """(h, w, channels [+ alpha]) samples as stored -> (h, w, 3) RGB uint8: deeper samples
    scaled from `bits`, greyscale repeated, transparent areas on white (the slide background)."""
    colour = scale_to_uint8(samples[..., : fmt.channels], bits)
    if fmt.channels == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if not fmt.alpha:
        return np.ascontiguousarray(colour)
    alpha = samples[..., fmt.channels]
    top = 1 if alpha.dtype == np.bool_ else np.iinfo(alpha.dtype).max
    return composite_on_white(
        np.dstack([colour, scale_to_uint8(alpha, int(np.log2(top + 1)) or 1)]), (255, 255, 255)
    )


def samples_nonzero(samples: np.ndarray, fmt: SampleFormat) -> np.ndarray:
    """(h, w) bool: any colour sample non-zero and, where there is alpha, not transparent."""
    nonzero = (samples[..., : fmt.channels] != 0).any(axis=-1)
    if fmt.alpha:
        nonzero &= samples[..., fmt.channels] != 0
    return nonzero
