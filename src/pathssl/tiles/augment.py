"""Pathology augmentations on uint8 CHW tensors, driven by an explicit torch.Generator so that
every view is a pure function of (seed, sample index): exact resume, any worker count. Used by
pretraining (pretrain/data.py) and by the slide-level augmented copies (embedding.py), so it
belongs to neither.

Stain jitter works in haematoxylin-eosin-DAB optical-density space (Ruifrok & Johnston's
matrix, as in scikit-image's rgb2hed), the augmentation that matters most across labs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Rows: haematoxylin, eosin, DAB optical-density vectors (Ruifrok & Johnston 2001).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float32
)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view: a random resized crop, then the pathology augmentations."""

    size_px: int = 224
    scale: tuple[float, float] = (0.4, 1.0)  # area fraction of the source crop
    flip_rot90: bool = True
    hed_sigma: float = 0.05  # multiplicative jitter of each stain's concentration
    hed_bias: float = 0.05  # additive jitter (optical density)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    colour_prob: float = 0.8
    grey_prob: float = 0.1
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.5)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def random_resized_crop(
    img: torch.Tensor, size: int, scale: tuple[float, float], g: torch.Generator
) -> torch.Tensor:
    _, h, w = img.shape
    area = h * w
    for _ in range(10):
        target = area * _uniform(g, *scale)
        ratio = math.exp(_uniform(g, math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x = int(torch.randint(0, w - cw + 1, (), generator=g))
            y = int(torch.randint(0, h - ch + 1, (), generator=g))
            break
    else:
        cw = ch = min(h, w)
        x, y = (w - cw) // 2, (h - ch) // 2
    crop = img[:, y : y + ch, x : x + cw].float()[None]
    return F.interpolate(
        crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


def hed_jitter(rgb: torch.Tensor, sigma: float, bias: float, g: torch.Generator) -> torch.Tensor:
    """rgb in [0, 1], (3, H, W). Scale and shift each stain's optical density."""
    od = -torch.log(rgb.clamp(min=1 / 255))
    hed = torch.einsum("chw,cd->dhw", od, _HED_FROM_RGB)
    alpha = 1 + (torch.rand(3, generator=g) * 2 - 1) * sigma
    beta = (torch.rand(3, generator=g) * 2 - 1) * bias
    hed = hed * alpha[:, None, None] + beta[:, None, None]
    od = torch.einsum("dhw,dc->chw", hed, _RGB_FROM_HED)
    return torch.exp(-od).clamp(0, 1)


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]


def colour_jitter(rgb: torch.Tensor, spec: ViewSpec, g: torch.Generator) -> torch.Tensor:
    rgb = rgb * _uniform(g, 1 - spec.brightness, 1 + spec.brightness)
    mean = _grey(rgb).mean()
    rgb = (rgb - mean) * _uniform(g, 1 - spec.contrast, 1 + spec.contrast) + mean
    grey = _grey(rgb)
    rgb = (rgb - grey) * _uniform(g, 1 - spec.saturation, 1 + spec.saturation) + grey
    if spec.hue:  # rotate chroma around the grey axis (a cheap, smooth hue shift)
        angle = _uniform(g, -spec.hue, spec.hue) * 2 * math.pi
        k = torch.ones(3) / math.sqrt(3)
        cos, sin = math.cos(angle), math.sin(angle)
        cross = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = cos * torch.eye(3) + sin * cross + (1 - cos) * torch.outer(k, k)
        rgb = torch.einsum("ij,jhw->ihw", rot, rgb)
    return rgb.clamp(0, 1)


def gaussian_blur(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    img = rgb[:, None]  # (3, 1, H, W): blur each channel separately
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return img[:, 0]


def make_view(img_uint8: torch.Tensor, spec: ViewSpec, g: torch.Generator) -> torch.Tensor:
    """uint8 (3, H, W) -> float (3, size, size) in [0, 1]; normalisation is the model's."""
    view = random_resized_crop(img_uint8, spec.size_px, spec.scale, g) / 255.0
    view = view.clamp(0, 1)
    if spec.flip_rot90:
        if torch.rand((), generator=g) < 0.5:
            view = view.flip(-1)
        view = torch.rot90(view, int(torch.randint(0, 4, (), generator=g)), dims=(-2, -1))
    if spec.hed_sigma or spec.hed_bias:
        view = hed_jitter(view, spec.hed_sigma, spec.hed_bias, g)
    if torch.rand((), generator=g) < spec.colour_prob:
        view = colour_jitter(view, spec, g)
    if torch.rand((), generator=g) < spec.grey_prob:
        view = _grey(view).expand(3, -1, -1).clone()
    if torch.rand((), generator=g) < spec.blur_prob:
        view = gaussian_blur(view, _uniform(g, *spec.blur_sigma))
    return view.contiguous()
