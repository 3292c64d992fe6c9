"""The CONCH v1 and v1.5 presets against the public reference code, on the same random weights.

A random checkpoint is saved in each model's published key layout, imported with
`pathssl import-weights` (in process, the CLI users run) and the bundle's features compared with
the reference model's on the same tensors. The fast tests cut the ViT to 2 blocks (everything
else full size: widths, heads, 448 px, the poolers); `PATHSSL_HEAVY_TESTS=1` runs both at full
depth.

The reference code is not vendored (CONCH's and TRIDENT's code are CC-BY-NC-ND 4.0: no adapted
copies). PATHSSL_REFERENCE_SRC (default /tmp/gcsrc) is a folder holding any of:
  CONCH/                  git clone https://github.com/mahmoodlab/CONCH (checked at 141cc09)
  unicorn_baseline-1.4.4/ its PyPI source distribution unpacked (TITAN's conch_v1_5.py):
                          pip download --no-deps --no-binary :all: unicorn-baseline==1.4.4
  TRIDENT/                git clone https://github.com/mahmoodlab/TRIDENT (checked at a91fa84)
A test whose source is absent skips and says which. The needed reference files are copied to a
temporary folder and imported from there, unchanged; shims only for what is missing: an empty
`__init__.py` for CONCH's open_clip_custom package (its own pulls the tokenizer and its files),
and unicorn_baseline's parent packages as empty modules (its `__init__` imports the whole
baseline) so that conch_v1_5.py's one import, model_utils, loads from its own file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathssl.cli import main as pathssl_main
from pathssl.encoder.bundle import load_bundle, make_preprocess
from pathssl.encoder.presets import PRESETS

REFERENCE_SRC = Path(os.environ.get("PATHSSL_REFERENCE_SRC", "/tmp/gcsrc"))
CONCH_PKG = REFERENCE_SRC / "CONCH" / "conch" / "open_clip_custom"
UNICORN_PKG = REFERENCE_SRC / "unicorn_baseline-1.4.4" / "src" / "unicorn_baseline"
TITAN_CONCH = UNICORN_PKG / "vision" / "pathology" / "titan" / "conch_v1_5.py"
TRIDENT_CONCH = (
    REFERENCE_SRC / "TRIDENT" / "trident/patch_encoder_models/model_zoo/conchv1_5/conchv1_5.py"
)
HEAVY = bool(os.environ.get("PATHSSL_HEAVY_TESTS"))
FAST_DEPTH = 2
ATOL = 1e-5  # features are layer-normed: values of order 1


def _needs(path: Path, what: str) -> None:
    if not path.exists():
        pytest.skip(
            f"{what} not found at {path}; see this file's docstring (PATHSSL_REFERENCE_SRC)"
        )
    pytest.importorskip("einops_exts", reason="pip install -r requirements-dev.txt")


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _conch_v1_reference(tmp: Path) -> tuple[types.ModuleType, dict]:
    """CONCH's coca_model (vision tower builder) from a copy of open_clip_custom."""
    _needs(CONCH_PKG, "CONCH's code (mahmoodlab/CONCH)")
    pkg = tmp / "conch_reference"
    pkg.mkdir()
    for name in ("coca_model", "vision_tower", "transformer", "utils", "transform", "constants"):
        shutil.copy(CONCH_PKG / f"{name}.py", pkg / f"{name}.py")
    (pkg / "__init__.py").write_text("")  # shim: the package without its tokenizer imports
    for name in [m for m in sys.modules if m.split(".")[0] == "conch_reference"]:
        del sys.modules[name]  # a copy made by an earlier test
    sys.path.insert(0, str(tmp))
    try:
        coca = importlib.import_module("conch_reference.coca_model")
        importlib.import_module("conch_reference.transform")
    finally:
        sys.path.remove(str(tmp))
    cfg = json.loads((CONCH_PKG / "model_configs" / "conch_ViT-B-16.json").read_text())
    return coca, cfg


def _titan_reference(tmp: Path) -> types.ModuleType:
    """TITAN's conch_v1_5.py (unicorn_baseline's copy) with its model_utils import satisfied."""
    _needs(TITAN_CONCH, "TITAN's conch_v1_5.py (unicorn-baseline 1.4.4 sdist)")
    for name in (
        "unicorn_baseline",
        "unicorn_baseline.vision",
        "unicorn_baseline.vision.pathology",
    ):
        sys.modules.setdefault(name, types.ModuleType(name))  # shim: parents without __init__
    copy = tmp / "titan_reference"
    copy.mkdir()
    shutil.copy(UNICORN_PKG / "vision" / "pathology" / "model_utils.py", copy)
    shutil.copy(TITAN_CONCH, copy)
    _load_file("unicorn_baseline.vision.pathology.model_utils", copy / "model_utils.py")
    return _load_file("titan_conch_v1_5_reference", copy / "conch_v1_5.py")


def _perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values in every tensor (layer norms and biases too, not just their 1s and 0s)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return module.eval()


def _import(
    preset_name: str, ckpt: Path, out: Path, depth: int | None, monkeypatch
) -> torch.nn.Module:
    """`pathssl import-weights --preset NAME` in process (depth cut for the fast tests)."""
    if depth is not None:
        preset = PRESETS[preset_name]
        kwargs = {**preset.timm_kwargs, "depth": depth}
        monkeypatch.setitem(PRESETS, preset_name, dataclasses.replace(preset, timm_kwargs=kwargs))
    argv = ["import-weights", "--preset", preset_name, "--checkpoint", str(ckpt)]
    assert pathssl_main([*argv, "--output", str(out)]) == 0
    return load_bundle(out)


def _tiles(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 448, 448, generator=torch.Generator().manual_seed(seed))


def _check_conch_v1(tmp_path: Path, monkeypatch, depth: int | None) -> None:
    coca, cfg = _conch_v1_reference(tmp_path)
    vision_cfg = {**cfg["vision_cfg"], **({"layers": depth} if depth else {})}
    torch.manual_seed(0)
    visual = coca._build_vision_tower(cfg["embed_dim"], vision_cfg, cfg["embed_dim_caption"])
    visual = _perturb(visual, 1)
    # the published pytorch_model.bin: the whole CoCa model; the text side only needs to be dropped
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state.update({"text.token_embedding.weight": torch.zeros(8, 4), "logit_scale": torch.ones(())})
    state["text_decoder.ln_final.weight"] = torch.ones(4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    bundle = _import("conch_v1", tmp_path / "pytorch_model.bin", tmp_path / "b", depth, monkeypatch)
    x = _tiles(2, 2)
    with torch.inference_mode():
        # CoCa.encode_image(x, proj_contrast=False, normalize=False) is this call
        expected = visual.forward_no_head(x, normalize=False)
        torch.testing.assert_close(bundle.module(x), expected, atol=ATOL, rtol=0)
    assert expected.shape == (2, 512)


def test_conch_v1_matches_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_conch_v1(tmp_path, monkeypatch, FAST_DEPTH)


def test_conch_v1_preprocessing_matches_reference(tmp_path: Path) -> None:
    """On a 448 px tile (no resize): the same tensor as CONCH's image_transform, OpenAI mean/std."""
    _conch_v1_reference(tmp_path)  # skips without CONCH's code
    transform = sys.modules["conch_reference.transform"]
    constants = sys.modules["conch_reference.constants"]
    reference = transform.image_transform(
        448, constants.OPENAI_DATASET_MEAN, constants.OPENAI_DATASET_STD
    )
    _check_preprocessing("conch_v1", reference)


def _check_preprocessing(preset_name: str, reference) -> None:
    from pathssl.encoder.import_weights import config_from_preset

    rgb = np.random.default_rng(3).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    ours = make_preprocess(config_from_preset(PRESETS[preset_name], "test"))(image)
    torch.testing.assert_close(ours, reference(image), atol=1e-5, rtol=0)


def _titan_model(
    titan: types.ModuleType, depth: int
) -> tuple[types.SimpleNamespace, torch.nn.Module]:
    """build_conch's model (TITAN's ConchConfig defaults) with random weights, before loading."""
    cfg = types.SimpleNamespace(
        patch_size=16, context_dim=1024, embed_dim=768, depth=depth, num_heads=16, mlp_ratio=4.0,
        qkv_bias=True, init_values=1e-6, pooler_n_queries_contrast=1,
    )  # fmt: skip
    torch.manual_seed(0)
    trunk = titan.VisionTransformer(
        patch_size=cfg.patch_size, embed_dim=cfg.context_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
        init_values=cfg.init_values,
    )  # fmt: skip
    pooler = titan.AttentionalPooler(
        d_model=cfg.embed_dim, context_dim=cfg.context_dim, n_queries=1
    )
    model = titan.EncoderWithAttentionalPooler(trunk, pooler, cfg.embed_dim)
    return cfg, _perturb(model, 1)


def _check_conch_v1_5(tmp_path: Path, monkeypatch, depth: int) -> None:
    titan = _titan_reference(tmp_path)
    cfg, model = _titan_model(titan, depth)
    # the published pytorch_model_vision.bin holds exactly this module's tensors (TRIDENT loads
    # it strictly into the same names); unicorn's copy of it is conch-tile-encoder.pth
    torch.save(model.state_dict(), tmp_path / "pytorch_model_vision.bin")
    shutil.copy(tmp_path / "pytorch_model_vision.bin", tmp_path / "conch-tile-encoder.pth")
    reference, eval_transform = titan.build_conch(cfg, tmp_path)  # the reference's own loading
    ckpt = tmp_path / "pytorch_model_vision.bin"
    bundle = _import(
        "conch_v1_5", ckpt, tmp_path / "b", None if depth == 24 else depth, monkeypatch
    )
    x = _tiles(2, 2)
    with torch.inference_mode():
        expected = reference.eval()(x)
        torch.testing.assert_close(bundle.module(x), expected, atol=ATOL, rtol=0)
    assert expected.shape == (2, 768)
    _check_preprocessing("conch_v1_5", eval_transform)


def test_conch_v1_5_matches_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_conch_v1_5(tmp_path, monkeypatch, FAST_DEPTH)


def test_conch_v1_5_position_embeddings_as_trident(tmp_path: Path) -> None:
    """TRIDENT's path for a checkpoint of either grid: resize_pos_embed at load (14 x 14 for its
    224 px ViT), then its forward's interpolate_pos_encoding at 448 px."""
    _needs(TRIDENT_CONCH, "TRIDENT's conchv1_5.py (mahmoodlab/TRIDENT)")
    shutil.copy(TRIDENT_CONCH, tmp_path / "trident_conchv1_5.py")
    trident = _load_file("trident_conchv1_5_reference", tmp_path / "trident_conchv1_5.py")
    from pathssl.encoder.conch_layout import fit_conch_v1_5

    trunk = trident.VisionTransformer(embed_dim=64, depth=1, num_heads=4)  # 224 px, as TRIDENT
    grid = types.SimpleNamespace(patch_embed=types.SimpleNamespace(grid_size=(28, 28)))
    target = types.SimpleNamespace(trunk=grid)  # what fit_conch_v1_5 reads of the bundle's module
    gen = torch.Generator().manual_seed(4)
    for tokens in (1 + 14 * 14, 1 + 28 * 28, 1 + 32 * 32):
        published = torch.randn(1, tokens, 64, generator=gen)
        with torch.no_grad():
            trunk.pos_embed.copy_(trident.resize_pos_embed(trunk, published, verbose=False))
            expected = trunk.interpolate_pos_encoding(torch.zeros(1, 1 + 28 * 28, 64), 448, 448)
        ours = fit_conch_v1_5({"trunk.pos_embed": published}, target)["trunk.pos_embed"]
        torch.testing.assert_close(ours, expected, atol=0, rtol=0)


def test_conch_v1_5_published_names_as_trident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRIDENT loads pytorch_model_vision.bin strictly into its CONCHVisionTower: the bundle's
    module has the same names and shapes (position embeddings: 14 x 14 there, 28 x 28 here)."""
    from pathssl.encoder.bundle import build_module
    from pathssl.encoder.import_weights import config_from_preset

    _needs(TRIDENT_CONCH, "TRIDENT's conchv1_5.py (mahmoodlab/TRIDENT)")
    shutil.copy(TRIDENT_CONCH, tmp_path / "trident_conchv1_5.py")
    trident = _load_file("trident_conchv1_5_reference", tmp_path / "trident_conchv1_5.py")
    # names and shapes only: its weight init skipped (seconds on a ViT-L); not on the meta device,
    # where its drop-path schedule's .item() fails
    monkeypatch.setattr(trident.VisionTransformer, "init_weights", lambda self, mode="": None)
    theirs = trident.CONCHVisionTower().state_dict()
    with torch.device("meta"):
        ours = build_module(config_from_preset(PRESETS["conch_v1_5"], "test")).state_dict()
    assert sorted(theirs) == sorted(ours)
    shapes = {k: tuple(v.shape) for k, v in theirs.items() if tuple(v.shape) != ours[k].shape}
    assert shapes == {"trunk.pos_embed": (1, 1 + 14 * 14, 1024)}


@pytest.mark.heavy
@pytest.mark.skipif(not HEAVY, reason="set PATHSSL_HEAVY_TESTS=1")
def test_conch_v1_full_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_conch_v1(tmp_path, monkeypatch, None)


@pytest.mark.heavy
@pytest.mark.skipif(not HEAVY, reason="set PATHSSL_HEAVY_TESTS=1")
def test_conch_v1_5_full_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_conch_v1_5(tmp_path, monkeypatch, 24)
