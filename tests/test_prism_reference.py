"""PRISM's slide encoder against the published code, same random weights in both.

The reference is PRISM's perceiver.py (PerceiverResampler) as shipped in unicorn-baseline
1.4.4's source distribution (a copy of paige-ai/Prism's modelling code, whose terms are
CC-BY-NC-ND 4.0: not copied into this repository). The test reads it from
PATHSSL_PRISM_REFERENCE or /tmp/gcsrc and skips with the reason when it is absent. Shims, for
imports the inference path does not use: environs (reads PERCEIVER_MEM_EFF_ATTN, left
unset), and the transformers PerceiverConfig (replaced by a namespace with the published
defaults, from configuring_prism.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pathssl.aggregation.models.prism import PrismSlideEncoder
from pathssl.aggregation.registry import get_slide_encoder
from pathssl.errors import ModelBundleError

REFERENCE = Path(
    os.environ.get(
        "PATHSSL_PRISM_REFERENCE",
        "/tmp/gcsrc/unicorn_baseline-1.4.4/src/unicorn_baseline/vision_language/prism/perceiver.py",
    )
)
CONFIG = types.SimpleNamespace(  # PerceiverConfig()'s defaults, as published
    latent_seq=512,
    latent_dim=1280,
    context_dim=2560,
    mhsa_heads=8,
    perceiver_depth=8,
    transformer_depth=6,
    share_xattn_start_layer=1,
    share_tf_start_layer=0,
    xattn_heads=1,
    mlp_mult=1,
    mlp_activation="geglu",
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} absent (unicorn-baseline 1.4.4 sdist; see the docstring)")
    text = REFERENCE.read_text()
    text = text.replace(
        "from environs import Env\n",
        "class Env:  # shim: the flag is never set here\n"
        "    def bool(self, name, default=False):\n"
        "        return default\n",
    )
    text = text.replace(
        "from unicorn_baseline.vision_language.prism.configuring_prism import PerceiverConfig\n",
        "PerceiverConfig = object  # shim: a type hint only\n",
    )
    path = tmp_path_factory.mktemp("prism_ref") / "prism_reference_perceiver.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("prism_reference_perceiver", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # random LayerNorm values too: every parameter matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def models(reference: types.ModuleType) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A narrow twin (64-d, 16 + 1 latents; the published depths, heads and layer sharing):
    one published-size forward is some 0.5 TFLOP (513 latents through 48 blocks)."""
    config = types.SimpleNamespace(**{**vars(CONFIG), "latent_dim": 64, "latent_seq": 16})
    torch.manual_seed(0)
    ref = _randomise(reference.PerceiverResampler(config))
    ours = PrismSlideEncoder(latent_seq=16, latent_dim=64).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_published_size_has_the_published_parameters(reference: types.ModuleType) -> None:
    torch.manual_seed(0)
    ref = reference.PerceiverResampler(CONFIG)
    ours = get_slide_encoder("prism").build()
    expected = {k: v.shape for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("n", [1, 257])
@torch.no_grad()
def test_forward_matches_reference(models: tuple, n: int) -> None:
    ref, ours = models
    tiles = torch.randn(n, 2560, generator=torch.Generator().manual_seed(n))
    expected = ref(tiles[None])["image_embedding"][0]
    preset = get_slide_encoder("prism")
    got = preset.encode(ours, tiles, torch.zeros(n, 2, dtype=torch.int64), 448)
    assert got.shape == (64,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    shuffled = preset.encode(ours, tiles.flip(0), torch.zeros(n, 2, dtype=torch.int64), 448)
    torch.testing.assert_close(shuffled, got, atol=1e-5, rtol=1e-5)  # a set, not a sequence


def test_loads_the_published_layout(tmp_path: Path) -> None:
    """model.safetensors holds the whole Prism (report decoder too) and keeps one name of each
    tensor the reused layers share; the preset takes the slide encoder's part, strictly.
    (Runs without the reference: the saved model is a randomised narrow twin of ours.)"""
    ref = _randomise(PrismSlideEncoder(latent_seq=16, latent_dim=64))
    first_names = {name for name, _ in ref.named_parameters()}  # one name per shared tensor
    assert len(first_names) < len(ref.state_dict())  # the layers that reuse earlier ones
    published = {f"image_resampler.{k}": v.clone() for k, v in ref.state_dict().items()}
    published = {k: v for k, v in published.items() if k.split(".", 1)[1] in first_names}
    published["text_decoder.model.embed_tokens.weight"] = torch.zeros(4, 8)
    published["temperature"] = torch.zeros(())
    save_file(published, tmp_path / "model.safetensors")
    preset = get_slide_encoder("prism")
    model = PrismSlideEncoder(latent_seq=16, latent_dim=64)  # the narrow twin of the fixture
    preset.load_weights(model, tmp_path)
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    del published["image_resampler.cls_norm.weight"]
    save_file(published, tmp_path / "model.safetensors")
    with pytest.raises(ModelBundleError, match="1 missing"):
        preset.load_weights(PrismSlideEncoder(latent_seq=16, latent_dim=64), tmp_path)
    with pytest.raises(ModelBundleError, match=r"model\.safetensors"):
        preset.load_weights(model, tmp_path / "empty")
