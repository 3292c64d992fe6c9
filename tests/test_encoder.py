"""Model bundles, the load_encoder API, and importing public checkpoints by preset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathssl.encoder.bundle import build_module, load_bundle, load_encoder, resolve_model_dir
from pathssl.encoder.import_weights import config_from_preset, import_weights, map_keys
from pathssl.encoder.presets import PRESETS
from pathssl.errors import ModelBundleError

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_model_api() -> None:
    module, preprocess = load_encoder(ROOT / "model")
    config = json.loads((ROOT / "model" / "config.json").read_text())
    assert config["trained"] in (True, False) and config["provenance"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    x = preprocess(image)
    size = config["input_size_px"]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    with torch.inference_mode():
        out = module(torch.stack([x, x]))
    assert out.shape == (2, config["embedding_dim"]) and torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[1])


def test_preprocess_normalises_with_config_stats(tiny_bundle_dir: Path) -> None:
    _, preprocess = load_encoder(tiny_bundle_dir)
    config = json.loads((tiny_bundle_dir / "config.json").read_text())
    x = preprocess(Image.new("RGB", (50, 50), (255, 0, 128)))
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(config["mean"])) / torch.tensor(
        config["std"]
    )
    torch.testing.assert_close(x[:, 5, 5], expected)


def test_model_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATHSSL_MODEL_DIR", raising=False)
    assert resolve_model_dir(tmp_path) == tmp_path
    assert resolve_model_dir() in (Path("/opt/ml/model"), ROOT / "model")


def test_tampered_weights_refused(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, copy)
    data = bytearray((copy / "encoder.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "encoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match="does not match"):
        load_bundle(copy)


def test_incomplete_bundle(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelBundleError, match=r"encoder\.safetensors"):
        load_bundle(tmp_path)


def _save_checkpoint(module: torch.nn.Module, path: Path, wrap: bool) -> None:
    state = module.state_dict()
    if wrap:  # the layout of DINO/DDP training checkpoints, with a projection head
        state = {f"module.backbone.{k}": v for k, v in state.items()}
        state["module.head.last_layer.weight"] = torch.zeros(4, 4)
        state = {"teacher": state, "epoch": torch.tensor(100)}
    torch.save(state, path)


@pytest.mark.parametrize("preset_name", ["resnet50", "lunit-dino-vits16"])
def test_import_preset_round_trip(preset_name: str, tmp_path: Path) -> None:
    preset = PRESETS[preset_name]
    torch.manual_seed(1)
    reference = build_module(config_from_preset(preset, "test")).eval()
    ckpt = tmp_path / "checkpoint.pth"
    _save_checkpoint(reference, ckpt, wrap=preset_name.startswith("lunit"))
    config = import_weights(preset_name, ckpt, tmp_path / "bundle")
    assert config.trained and len(config.weights_sha256) == 64
    module, preprocess = load_encoder(tmp_path / "bundle")
    x = preprocess(Image.new("RGB", (256, 256), (200, 120, 180)))[None]
    with torch.inference_mode():
        torch.testing.assert_close(module(x), reference(x))
    assert module(x).shape == (1, preset.embedding_dim)


@pytest.mark.parametrize("preset_name", sorted(PRESETS))
def test_preset_checkpoint_shapes_fit_full_architecture(preset_name: str) -> None:
    """Build every preset at full size on the meta device (no memory) and load a checkpoint of
    exactly its keys and shapes, wrapped as published, through the key mapping."""
    preset = PRESETS[preset_name]
    with torch.device("meta"):
        module = build_module(config_from_preset(preset, "test"))
    target = module.backbone if preset.pooling == "cls+mean" else module
    published = {f"module.{k}": v for k, v in target.state_dict().items()}
    published["head.weight"] = torch.empty(1000, 8, device="meta")
    target.load_state_dict(map_keys(published, preset), strict=True, assign=True)
    width = target.embed_dim * 2 if preset.pooling == "cls+mean" else target.num_features
    assert width == preset.embedding_dim


@pytest.mark.heavy
@pytest.mark.skipif(not os.environ.get("PATHSSL_HEAVY_TESTS"), reason="set PATHSSL_HEAVY_TESTS=1")
@pytest.mark.parametrize("preset_name", ["uni", "virchow2", "h-optimus-0", "prov-gigapath"])
def test_import_foundation_model_full_size(preset_name: str, tmp_path: Path) -> None:
    preset = PRESETS[preset_name]
    reference = build_module(config_from_preset(preset, "test")).eval()
    ckpt = tmp_path / "pytorch_model.bin"
    _save_checkpoint(reference, ckpt, wrap=False)
    import_weights(preset_name, ckpt, tmp_path / "bundle")
    module, preprocess = load_encoder(tmp_path / "bundle")
    x = preprocess(Image.new("RGB", (224, 224), (200, 120, 180)))[None]
    with torch.inference_mode():
        torch.testing.assert_close(module(x), reference(x))


class NotATensor:
    """Stands for any pickled object a malicious checkpoint could carry."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "evil.pth"
    torch.save({"model": NotATensor()}, ckpt)
    with pytest.raises(ModelBundleError, match="tensors-only"):
        import_weights("resnet50", ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_checkpoint_for_preset(tmp_path: Path) -> None:
    ckpt = tmp_path / "small.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, ckpt)
    with pytest.raises(ModelBundleError, match="do not match preset"):
        import_weights("resnet50", ckpt, tmp_path / "out")
