"""Prov-GigaPath's slide encoder against the published code, same random weights in both.

The reference is prov-gigapath's own gigapath/slide_encoder.py with its torchscale LongNet,
copied unchanged under tests/reference/gigapath/ (Apache-2.0 and MIT; see its README.md).
Shims, for imports the inference path does not use or cannot use on a CPU:
- fairscale (checkpoint_wrapper, wrap): only called when activation checkpointing or FSDP
  is configured, which the slide encoder does not;
- flash_attn_func: the reference asserts flash attention and only has it on a CUDA GPU; the
  shim is plain softmax attention returning flash-attn's (output, log-sum-exp) pair;
- numpy's printing is set to legacy="1.25" while the reference is used: it eval()s the
  str() of a list of numpy integers, which numpy 2 prints as "np.int64(1024)".
The reference is built with a 64 x 64 position grid (slide_ngrids) instead of 1000 x 1000 so
that its fixed position table is small, not 3 GB; a tile's position row does not depend on
the grid size as long as the tile lies on it. One test runs the published size
(gigapath_slide_enc12l768d) on a few tiles; the long sequences (two segments of 1024 tokens,
padding in every dilation) run on a 2-layer, 192-d twin, to keep the suite fast on a CPU.
"""

from __future__ import annotations

import sys
import types
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from pathssl.aggregation.models.gigapath_slide import GigaPathSlideEncoder
from pathssl.aggregation.registry import get_slide_encoder
from pathssl.errors import InputLayoutError

REFERENCE = Path(__file__).parent / "reference" / "gigapath"
GRID = 64


def _flash_attn_func(q, k, v, dropout=0.0, bias=None, softmax_scale=None, is_causal=False):
    """flash_attn_func's contract on (batch, length, heads, dim): output and lse (b, h, l)."""
    assert bias is None and not is_causal
    scale = softmax_scale or q.shape[-1] ** -0.5
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) * scale
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhlm,bmhd->blhd", torch.softmax(scores, dim=-1), v)
    return out, lse


@pytest.fixture(scope="module")
def reference() -> types.ModuleType:
    pytest.importorskip("einops", reason="einops: the reference's tensor reshaping")
    if not (REFERENCE / "gigapath" / "slide_encoder.py").is_file():
        pytest.skip(f"{REFERENCE} absent")
    fairscale = types.ModuleType("fairscale")
    fairscale.nn = types.ModuleType("fairscale.nn")
    fairscale.nn.checkpoint_wrapper = fairscale.nn.wrap = lambda module, *a, **k: module
    saved = dict(sys.modules)
    sys.modules.update({"fairscale": fairscale, "fairscale.nn": fairscale.nn})
    sys.path.insert(0, str(REFERENCE))
    printing = np.get_printoptions()
    np.set_printoptions(legacy="1.25")  # the reference eval()s str(list of numpy ints)
    try:
        from gigapath import slide_encoder  # the reference, as published
        from torchscale.component import multihead_attention

        multihead_attention.flash_attn_func = _flash_attn_func
        yield slide_encoder
    finally:
        np.set_printoptions(**printing)
        sys.path.remove(str(REFERENCE))
        for name in set(sys.modules) - set(saved):  # the reference's packages and shims only
            if name.split(".")[0] in ("gigapath", "torchscale", "fairscale"):
                del sys.modules[name]


def _pair(reference: types.ModuleType, dim: int, depth: int) -> tuple[torch.nn.Module, ...]:
    """The reference LongNetViT and ours, the same random weights in both."""
    torch.manual_seed(0)
    ref = reference.LongNetViT(
        in_chans=1536,
        embed_dim=dim,
        depth=depth,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        slide_ngrids=GRID,
    ).eval()
    # Random LayerNorm and bias values too, so that every parameter matters to the comparison.
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    if (dim, depth) == (768, 12):
        ours = get_slide_encoder("gigapath-slide").build()
    else:
        ours = GigaPathSlideEncoder(dim=dim, depth=depth, ffn_dim=4 * dim).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # the published key names, unchanged
    return ref, ours


@pytest.fixture(scope="module")
def narrow(reference: types.ModuleType) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A 2-layer, 192-d twin (16 heads, the published segments and dilations) registered in
    the reference's own config table: the long-sequence paths at a fraction of the cost."""
    from torchscale.model import LongNetConfig

    LongNetConfig.LongNet_2_layers_192_dim = {
        **LongNetConfig.LongNet_12_layers_768_dim,
        "encoder_layers": 2,
        "encoder_embed_dim": 192,
        "encoder_ffn_embed_dim": 768,
    }
    return _pair(reference, 192, 2)


def _tiles(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n tissue tiles on a 64 x 64 grid of 256 px tiles, in row-major order, each corner
    moved by up to 255 px (the grid cell, not the exact corner, sets the position)."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(GRID * GRID, generator=g)[:n].sort().values
    coords = torch.stack([cells % GRID, cells // GRID], dim=1) * 256
    coords = coords + torch.randint(0, 256, coords.shape, generator=g)
    return torch.randn(n, 1536, generator=g), coords


def _compare(ref: torch.nn.Module, ours: torch.nn.Module, n: int, plain: bool) -> None:
    """The pipeline's last_layer_embed; with plain, the plain forward's output too."""
    features, coords = _tiles(n, seed=n)
    expected = ref(features[None], coords[None].float(), all_layer_embed=True)[-1]
    got = ours(features[None], coords[None])
    assert got.shape == (1, ours.dim)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    if not plain:
        return
    expected_plain = ref(features[None], coords[None].float())[0]
    ours.final_encoder_norm = True
    try:
        got_plain = ours(features[None], coords[None])
    finally:
        ours.final_encoder_norm = False
    torch.testing.assert_close(got_plain, expected_plain, atol=2e-5, rtol=1e-5)
    # the two conventions differ (the encoder's closing LayerNorm), so both were checked
    assert (got_plain - got).abs().max() > 1e-3


@torch.no_grad()
def test_full_size_matches_reference(reference: types.ModuleType) -> None:
    """The published size (12 layers, 768-d, 16 heads): 40 tiles, every dilation padded."""
    ref, ours = _pair(reference, 768, 12)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    _compare(ref, ours, 40, plain=False)


@pytest.mark.parametrize("n", [300, 1100])  # one segment; two segments of 1024 (padded)
@torch.no_grad()
def test_long_sequences_match_reference(narrow: tuple, n: int) -> None:
    _compare(*narrow, n, plain=n == 300)


@torch.no_grad()
def test_encode_places_tiles_on_the_grid_whatever_the_scan(narrow: tuple) -> None:
    """encode takes level-0 corners and the level-0 tile size: a 40x scan (512 px tiles at
    level 0), given in shuffled order, gives the reference's embedding of the same tiles on
    the 0.5 mpp grid in row-major order."""
    ref, ours = narrow
    features, coords = _tiles(500, seed=1)
    cells = coords // 256
    expected = ref(features[None], (cells * 256)[None].float(), all_layer_embed=True)[-1][0]
    shuffle = torch.randperm(500, generator=torch.Generator().manual_seed(2))
    level0 = cells * 512 + 7  # a 40x scan: the same tiles are 512 px at level 0
    preset = get_slide_encoder("gigapath-slide")
    got = preset.encode(ours, features[shuffle], level0[shuffle], 512)
    assert got.shape == (192,)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    with pytest.raises(InputLayoutError, match="1000 tiles"):
        preset.encode(ours, features[:2], torch.tensor([[0, 0], [1000 * 512, 0]]), 512)
