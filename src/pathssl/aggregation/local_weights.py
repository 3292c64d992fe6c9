"""Slide-encoder weights from a folder the user downloaded: never a network call.

A missing file is one line naming the exact file expected and where to get it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from pathssl.aggregation.registry import SlideEncoderPreset
from pathssl.errors import ModelBundleError

KeyMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def weight_file(folder: Path, file_name: str, preset_name: str, download: str) -> Path:
    """The path of file_name in folder, or one line saying what to put there."""
    folder = Path(folder)
    path = folder / file_name
    if not path.is_file():
        raise ModelBundleError(
            f"slide encoder {preset_name}: {path} not found; put {file_name} from {download} "
            f"into {folder}"
        )
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A tensors-only checkpoint: safetensors, or torch.load(weights_only=True)."""
    from pathssl.encoder.import_weights import read_checkpoint

    return read_checkpoint(Path(path))


def load_strict(
    model: torch.nn.Module, path: Path, preset_name: str, key_map: KeyMap | None = None
) -> None:
    """Load every tensor of the file into model; a missing or extra key is one line."""
    state = read_tensors(path)
    if key_map is not None:
        state = key_map(state)
    result = model.load_state_dict(state, strict=False)
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise ModelBundleError(
            f"slide encoder {preset_name}: {path} does not fit the architecture "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys, "
            f"e.g. {problems[0]}); download the published file unchanged"
        )


def load_single_file(
    model: torch.nn.Module, folder: Path, preset: SlideEncoderPreset, key_map: KeyMap | None = None
) -> None:
    """The common case: the preset's one weight file, keys as published (after key_map)."""
    path = weight_file(folder, preset.weight_files[0], preset.name, preset.download)
    load_strict(model, path, preset.name, key_map)


def folder_sha256(folder: Path, file_names: tuple[str, ...]) -> str:
    """One digest over the named weight files, for the run identity."""
    digest = hashlib.sha256()
    for name in file_names:
        path = Path(folder) / name
        digest.update(name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
