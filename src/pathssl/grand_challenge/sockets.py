"""Grand-Challenge's input and output sockets, read from inputs.json and resources/.

inputs.json is a list with one object per input socket, each holding an `interface`
(slug, kind, super_kind, relative_path, ...) and a `value`, `file` or `image`. An image
input is a folder /input/<relative_path> holding exactly one file whose name we do not
control, so it is opened by content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathssl.errors import InputLayoutError
from pathssl.pipeline import OutputLayout


@dataclass(frozen=True)
class SocketConfig:
    """What this algorithm reads and writes on the platform (resources/grand-challenge.json)."""

    image_slug: str
    mask_slug: str
    mpp_slug: str
    layout: OutputLayout

    @classmethod
    def from_file(cls, path: Path) -> SocketConfig:
        try:
            raw = json.loads(Path(path).read_text())
            inputs, outputs = raw["inputs"], raw["outputs"]
            layout = OutputLayout(**outputs)
            config = cls(
                inputs["whole_slide_image"]["slug"],
                inputs["tissue_mask"]["slug"],
                inputs["microns_per_pixel"]["slug"],
                layout,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputLayoutError(f"{path}: not a valid socket configuration ({exc})") from exc
        for rel in (v for v in vars(layout).values() if v):
            inside(Path("/output"), rel, f"{path}: output path")
        return config


@dataclass(frozen=True)
class JobInputs:
    slide: Path
    tissue_mask: Path | None
    mpp: float | None


def inside(root: Path, relative: str, what: str) -> Path:
    """root/relative, refusing absolute paths and any that leave root (.., symlinks)."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise InputLayoutError(f"{what} {relative!r} leaves {root}; give a relative path inside it")
    full = root / rel
    if root.exists() and not full.resolve().is_relative_to(root.resolve()):
        raise InputLayoutError(f"{what} {relative!r} resolves outside {root}")
    return full


def _single_file(folder: Path, slug: str) -> Path:
    if not folder.is_dir():
        raise InputLayoutError(f"{folder}: input folder for socket {slug!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) != 1:
        names = ", ".join(p.name for p in files) or "none"
        raise InputLayoutError(
            f"{folder}: socket {slug!r} must hold exactly one file, found {len(files)} ({names})"
        )
    return files[0]


def read_inputs_json(input_root: Path, config: SocketConfig) -> JobInputs:
    path = input_root / "inputs.json"
    try:
        sockets = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputLayoutError(
            f"{path}: not readable JSON ({exc}); it must be a list of socket objects"
        ) from exc
    if not isinstance(sockets, list) or not all(
        isinstance(s, dict) and isinstance(s.get("interface"), dict) for s in sockets
    ):
        raise InputLayoutError(f"{path}: must be a list of objects with an 'interface' each")

    def interface(s: dict[str, Any]) -> dict[str, Any]:
        return s["interface"]

    images = [s for s in sockets if interface(s).get("kind") == "Image"]
    if len(images) > 1:
        images = [s for s in images if interface(s).get("slug") == config.image_slug]
    if len(images) != 1:
        raise InputLayoutError(
            f"{path}: expected one whole-slide image socket (kind 'Image', slug "
            f"{config.image_slug!r}), found {len(images)}"
        )
    masks = [s for s in sockets if interface(s).get("kind") == "Segmentation"]
    if len(masks) > 1:
        masks = [s for s in masks if interface(s).get("slug") == config.mask_slug]
    mpps = [s for s in sockets if interface(s).get("slug") == config.mpp_slug]

    def file_of(socket: dict[str, Any]) -> Path:
        iface = interface(socket)
        rel = iface.get("relative_path")
        if not isinstance(rel, str):
            raise InputLayoutError(f"{path}: socket {iface.get('slug')!r} has no relative_path")
        return _single_file(inside(input_root, rel, "input path"), iface.get("slug", "?"))

    mpp = None
    if mpps and mpps[0].get("value") is not None:
        try:
            mpp = float(mpps[0]["value"])
        except (TypeError, ValueError) as exc:
            raise InputLayoutError(f"{path}: {config.mpp_slug!r} must be a number") from exc
    return JobInputs(
        slide=file_of(images[0]),
        tissue_mask=file_of(masks[0]) if masks else None,
        mpp=mpp,
    )
