"""TITAN's slide encoder against the published code, same random weights in both.

The reference is TITAN's vision_transformer.py as shipped in unicorn-baseline 1.4.4's source
distribution (adapted from MahmoodLab/TITAN, whose code is CC-BY-NC-ND 4.0: not copied into
this repository). The test reads it from PATHSSL_TITAN_REFERENCE or /tmp/gcsrc, shims its two
imports that only the batched training path uses (einops, the transformers config), and
skips with the reason when the file is absent.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from pathssl.aggregation.registry import get_slide_encoder

REFERENCE = Path(
    os.environ.get(
        "PATHSSL_TITAN_REFERENCE",
        "/tmp/gcsrc/unicorn_baseline-1.4.4/src/unicorn_baseline/vision/pathology/titan/"
        "vision_transformer.py",
    )
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} absent (unicorn-baseline 1.4.4 sdist; see the docstring)")
    text = REFERENCE.read_text()
    text = text.replace(
        "from .configuration_titan import TitanVisionConfig\n", "TitanVisionConfig = object\n"
    )
    text = text.replace("from einops import repeat\n", "repeat = None  # batched path only\n")
    path = tmp_path_factory.mktemp("titan_ref") / "titan_reference_vit.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("titan_reference_vit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def theirs(reference: types.ModuleType) -> torch.nn.Module:
    """TitanConfig's vision tower (configuration_titan.py) with the CoCa pooler it sets;
    PyTorch's default initialisation (timm's is slower and no more telling), random class
    token."""
    torch.manual_seed(0)
    model = reference.VisionTransformer(
        grid_size=14,
        global_pool="token",
        embed_dim=768,
        depth=6,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        mlp_patch_embed_dim=768,
        pos_encode_type="alibi",
        attentional_pool="parallel",
        attn_pooler_queries=128,
        attn_pooler_heads=8,
        weight_init="skip",
    ).eval()
    torch.nn.init.normal_(model.cls_token)
    return model


@pytest.fixture(scope="module")
def ours(theirs: torch.nn.Module) -> torch.nn.Module:
    model = get_slide_encoder("titan").build().eval()
    model.load_state_dict(theirs.state_dict(), strict=True)
    return model


def _slide(n: int, patch_px: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiles on a sparse grid (holes, an offset origin) like a tissue-filtered slide."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(30 * 40, generator=g)[:n]
    rc = torch.stack([cells // 40, cells % 40], dim=1)
    coords = (rc[:, [1, 0]] * patch_px + torch.tensor([3 * patch_px, 7 * patch_px])).long()
    return torch.randn(n, 768, generator=g), coords


def test_state_dicts_have_the_same_keys_and_shapes(
    ours: torch.nn.Module, theirs: torch.nn.Module
) -> None:
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


@pytest.mark.parametrize("n, patch_px", [(2, 512), (37, 1024), (160, 512)])
def test_forward_matches_the_reference(
    ours: torch.nn.Module, theirs: torch.nn.Module, n: int, patch_px: int
) -> None:
    preset = get_slide_encoder("titan")
    features, coords = _slide(n, patch_px, seed=n)
    features[0] = 0.0  # an all-zero tile is background to both
    with torch.inference_mode():
        expected = theirs(features[None], coords[None], patch_px, no_proj=True)[0]
        got = preset.encode(ours, features, coords, patch_px)
    assert got.shape == (preset.embedding_dim,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_published_keys_load_through_the_preset(theirs: torch.nn.Module, tmp_path: Path) -> None:
    """model.safetensors as published: vision_encoder.* plus the text tower, which is left."""
    from safetensors.torch import save_file

    preset = get_slide_encoder("titan")
    state = {f"vision_encoder.{k}": v for k, v in theirs.state_dict().items()}
    state["text_encoder.token_embedding.weight"] = torch.zeros(4, 768)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    model = preset.build()
    preset.load_weights(model, tmp_path)
    got = model.state_dict()
    for key, value in state.items():
        if key.startswith("vision_encoder."):
            assert torch.equal(got[key.removeprefix("vision_encoder.")], value)
