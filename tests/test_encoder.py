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
from pathssl.encoder.import_weights import config_from_preset, import_weights, published_to_timm
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


def _as_transformers_4(state: dict[str, torch.Tensor], swiglu: bool) -> dict[str, torch.Tensor]:
    """timm ViT tensors under the names transformers 4 saved ViTModel / Dinov2Model under (the
    layout of the published Phikon, Phikon-v2 and Midnight checkpoints)."""
    dinov2 = "blocks.0.ls1.gamma" in state
    registers = "reg_token" in state
    norm1, norm2 = ("norm1", "norm2") if dinov2 else ("layernorm_before", "layernorm_after")
    fc1, fc2 = (
        ("mlp.weights_in", "mlp.weights_out")
        if swiglu
        else ("mlp.fc1", "mlp.fc2")
        if dinov2
        else ("intermediate.dense", "output.dense")
    )
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "cls_token":
            out["embeddings.cls_token"] = value
        elif key == "reg_token":
            out["embeddings.register_tokens"] = value
        elif key == "pos_embed":
            if registers:  # transformers embeds the class token's position too
                value = torch.cat([torch.empty_like(value[:, :1]), value], dim=1)
            out["embeddings.position_embeddings"] = value
        elif key.startswith("patch_embed.proj."):
            out[f"embeddings.patch_embeddings.projection.{parts[-1]}"] = value
        elif key.startswith("norm."):
            out[f"layernorm.{parts[-1]}"] = value
        elif key.startswith("blocks."):
            block, rest = f"encoder.layer.{parts[1]}.", ".".join(parts[2:])
            if rest.startswith("attn.qkv."):
                for name, chunk in zip(("query", "key", "value"), value.chunk(3), strict=True):
                    out[f"{block}attention.attention.{name}.{parts[-1]}"] = chunk
                continue
            renamed = {
                "norm1": norm1,
                "norm2": norm2,
                "attn.proj": "attention.output.dense",
                "mlp.fc1": fc1,
                "mlp.fc2": fc2,
                "ls1.gamma": "layer_scale1.lambda1",
                "ls2.gamma": "layer_scale2.lambda1",
            }
            stem = rest.rsplit(".", 1)[0] if not rest.startswith("ls") else rest
            suffix = "" if rest.startswith("ls") else "." + parts[-1]
            out[block + renamed[stem] + suffix] = value
        else:
            raise AssertionError(f"no transformers name for {key}")
    hidden = state["cls_token"].shape[-1]
    out["embeddings.mask_token"] = torch.empty(1, hidden, device=state["cls_token"].device)
    if not dinov2:
        out["pooler.dense.weight"] = torch.empty(hidden, hidden, device="meta")
    return out


@pytest.mark.parametrize("preset_name", sorted(PRESETS))
def test_preset_checkpoint_shapes_fit_full_architecture(preset_name: str) -> None:
    """Build every preset at full size on the meta device (no memory) and load a checkpoint of
    exactly its published keys and shapes, wrapped as published, through the key mapping."""
    from timm.layers import GluMlp

    preset = PRESETS[preset_name]
    with torch.device("meta"):
        module = build_module(config_from_preset(preset, "test"))
    target = module.backbone if preset.pooling == "cls+mean" else module
    if preset.layout == "transformers":
        published = _as_transformers_4(
            target.state_dict(), isinstance(target.blocks[0].mlp, GluMlp)
        )
        if preset_name == "midnight":  # DINOv2 checkpoints keep position embeddings for 518 px
            published["embeddings.position_embeddings"] = torch.empty(
                1, 1 + 37 * 37, 1536, device="meta"
            )
    else:
        published = {f"module.{k}": v for k, v in target.state_dict().items()}
        published["head.weight"] = torch.empty(1000, 8, device="meta")
    state = published_to_timm(published, preset, target)
    target.load_state_dict(state, strict=True, assign=True)
    width = target.embed_dim * 2 if preset.pooling == "cls+mean" else target.num_features
    assert width == preset.embedding_dim


def test_presets_people_use_are_there() -> None:
    for name in ("uni2-h", "h-optimus-1", "virchow", "phikon", "phikon-v2", "midnight", "hibou-l"):
        assert PRESETS[name].source_url.startswith("https://huggingface.co/")


def _transformers():
    return pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt")


def test_phikon_matches_transformers_forward(tmp_path: Path) -> None:
    """Phikon at full size: transformers' own ViTModel with random weights, saved, imported by
    the preset and run by timm, gives the same class token."""
    from safetensors.torch import save_file

    transformers = _transformers()
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=224, patch_size=16, layer_norm_eps=1e-12)
    reference = transformers.ViTModel(config).eval()
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    import_weights("phikon", tmp_path / "model.safetensors", tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference(pixel_values=x).last_hidden_state[:, 0]
        torch.testing.assert_close(bundle.module(x), expected, rtol=1e-5, atol=1e-5)
    assert bundle.config.layer_norm_eps == 1e-12


@pytest.mark.parametrize("registers", [0, 4], ids=["dinov2-swiglu", "dinov2-registers"])
def test_dinov2_layout_matches_transformers(tmp_path: Path, registers: int) -> None:
    """The Dinov2Model path of Phikon-v2 and Midnight (layer scale, gated MLP, class + mean
    patch token, position embeddings saved for another size) and the Dinov2WithRegisters path
    of Hibou-L (registers, the class token's position folded in), each on a small model
    against transformers' own forward at the same random weights."""
    from safetensors.torch import save_file

    from pathssl.encoder.presets import Preset

    transformers = _transformers()
    torch.manual_seed(0)
    common = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "patch_size": 8,
        "image_size": 48,  # saved for 48 px, run at 32 px: resampled once at import
        "mlp_ratio": 4,
    }
    if registers:
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **common)
        reference = transformers.Dinov2WithRegistersModel(config).eval()
    else:
        config = transformers.Dinov2Config(use_swiglu_ffn=True, **common)
        reference = transformers.Dinov2Model(config).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if "lambda1" in name:
                param.normal_(0.5, 0.1)  # layer scale away from its init
            if "position_embeddings" in name or "cls_token" in name:
                param.normal_(0, 0.5)  # and position embeddings that matter
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()},
        str(tmp_path / "model.safetensors"),
    )
    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}
    kwargs["init_values"] = 1e-5
    if registers:
        kwargs |= {"reg_tokens": registers, "no_embed_class": True, "global_pool": "token"}
    else:  # transformers: 2 x 176 gated units for ratio 4
        kwargs |= {"mlp_ratio": 352 / 64, "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}
        kwargs["global_pool"] = ""
    preset = Preset(
        name="small-dinov2",
        description="test",
        architecture="vit_small_patch16_224",
        timm_kwargs=kwargs,
        embedding_dim=64 if registers else 128,
        input_size_px=32,
        pooling="timm" if registers else "cls+mean",
        layout="transformers",
    )
    import_weights(preset, tmp_path / "model.safetensors", tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        tokens = reference(pixel_values=x).last_hidden_state
        if registers:
            expected = tokens[:, 0]
        else:
            expected = torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1)
        torch.testing.assert_close(bundle.module(x), expected, rtol=1e-4, atol=1e-4)


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
