"""What produced a slide's outputs, as one record and its digest: the slide file, every
option that changes what the outputs hold, the model (tile encoder and slide aggregator), the
device's numerics and the pathssl version. Resume reuses outputs only when the digest matches.

The hash of pathssl's code is recorded beside it but not digested: an editable install changes
it with every edit. Outputs made by other code of the same version are reused and said so."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pathssl
from pathssl.embed.inputs import SlideInput, file_identity
from pathssl.embed.options import EmbedOptions
from pathssl.encoder.bundle import EncoderBundle
from pathssl.outputs.provenance import code_sha256

# how the work is done, not what it makes: these never change an output's content
NOT_RESULT_AFFECTING = ("batch_size", "num_workers", "read_threads", "block_tiles", "tissue_mask")


def result_options(options: EmbedOptions) -> dict[str, Any]:
    chosen = asdict(options)
    for key in NOT_RESULT_AFFECTING:
        chosen.pop(key)
    chosen.pop("slide_encoder_weights")  # where the files lie; their sha256 is the model's
    if chosen.get("slide_encoder") is None:  # identities made before slide encoders still match
        chosen.pop("slide_encoder")
    chosen.pop("device")  # stands in the record as the numerics it gives (`numerics`)
    return json.loads(json.dumps(chosen, default=str))


def run_identity(
    slide: SlideInput,
    bundle: EncoderBundle,
    options: EmbedOptions,
    *,
    aggregator_sha256: str | None,
    numerics: str,
) -> dict[str, Any]:
    """The record (with its `digest`) written to run.json as `run_identity`. `numerics`: the
    device kind and precision (cpu fp32, cuda bf16, ...) and the engine, which move features."""
    cfg = bundle.config
    record: dict[str, Any] = {
        "slide": file_identity(slide.path),
        "tissue_mask": file_identity(Path(slide.mask)) if slide.mask else None,
        "options": result_options(options),
        "model": {
            "weights_sha256": bundle.weights_sha256,
            "config": {
                "target_mpp": cfg.target_mpp,
                "input_size_px": cfg.input_size_px,
                "mean": list(cfg.mean),
                "std": list(cfg.std),
            },
            "slide_aggregator_sha256": aggregator_sha256,
            **_bundled_slide_encoder(bundle),
        },
        "numerics": numerics,
        "pathssl_version": pathssl.__version__,
        "code_sha256": code_sha256(),
    }
    record["digest"] = digest(record)
    return record


def _bundled_slide_encoder(bundle: EncoderBundle) -> dict[str, Any]:
    """The preset named by a pretrained slide encoder inside the model directory (its weights'
    sha256 is slide_aggregator_sha256); nothing when there is none, so that identities made
    before slide encoders existed still match."""
    manifest = Path(bundle.path) / "slide_encoder" / "slide_encoder.json"
    if not manifest.is_file():
        return {}
    try:
        return {"slide_encoder": json.loads(manifest.read_text()).get("preset")}
    except (OSError, ValueError, AttributeError):
        return {"slide_encoder": "unreadable manifest"}


def digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("digest", "code_sha256")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What changed between the identity an output was made with and the one asked for, in
    words ("model", "options: min_tissue_fraction 0.25 -> 0.5", ...); empty when equal."""
    if not old or "digest" not in old:
        return ["made before run identities were recorded"]
    if old.get("digest") == new["digest"] and digest(old) == old["digest"]:
        return []
    changed = []
    if old.get("slide") != new["slide"]:
        changed.append("the slide file (path, size or modification time)")
    if old.get("tissue_mask") != new["tissue_mask"]:
        changed.append("the tissue mask")
    old_opts, new_opts = old.get("options", {}), new["options"]
    for key in sorted(set(old_opts) | set(new_opts)):
        if old_opts.get(key) != new_opts.get(key):
            changed.append(f"option {key}: {old_opts.get(key)!r} -> {new_opts.get(key)!r}")
    for key, words in (
        ("model", "the model"),
        ("numerics", "the device or engine"),
        ("pathssl_version", "the pathssl version"),
    ):
        if old.get(key) != new[key]:
            changed.append(words)
    return changed or ["the run identity's digest"]


def code_note(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """One line when reused outputs were made by other code of the same version."""
    if old.get("code_sha256") != new.get("code_sha256"):
        return (
            f"made by other pathssl code of the same version (code sha256 "
            f"{str(old.get('code_sha256'))[:12]}, now {str(new.get('code_sha256'))[:12]})"
        )
    return None
