"""FEATHER's slide encoder against MIL-Lab's ABMIL, same random weights in both.

The reference is MIL-Lab's src/models/{abmil,layers,mil_template}.py (CC-BY-NC-ND 4.0: not
copied into this repository). The test reads them from a MIL-Lab checkout named by
PATHSSL_MIL_LAB, or from the bare mirror the development machines keep, and skips with the
reason when neither is present.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from pathssl.aggregation.registry import get_slide_encoder

CHECKOUT = os.environ.get("PATHSSL_MIL_LAB")
MIRROR = Path("/work/.mirror/mahmoodlab+MIL-Lab/repo")
FILES = ("mil_template.py", "layers.py", "abmil.py")


def _source(name: str) -> str | None:
    if CHECKOUT:
        path = Path(CHECKOUT) / "src" / "models" / name
        return path.read_text() if path.is_file() else None
    if not MIRROR.is_dir():
        return None
    shown = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "show", f"HEAD:src/models/{name}"],
        capture_output=True,
        text=True,
    )
    return shown.stdout if shown.returncode == 0 else None


@pytest.fixture(scope="module")
def abmil(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    pytest.importorskip("transformers")
    sources = {name: _source(name) for name in FILES}
    if None in sources.values():
        pytest.skip("MIL-Lab's model code absent (set PATHSSL_MIL_LAB to a checkout)")
    root = tmp_path_factory.mktemp("mil_lab")
    package = root / "mil_lab_ref" / "models"
    package.mkdir(parents=True)
    (root / "mil_lab_ref" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for name, text in sources.items():
        (package / name).write_text(text.replace("from src.", "from mil_lab_ref."))
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("mil_lab_ref.models.abmil")
    finally:
        sys.path.remove(str(root))


@pytest.fixture(scope="module")
def theirs(abmil: types.ModuleType) -> torch.nn.Module:
    """abmil.base (model_configs/abmil/base.yaml) on CONCH v1.5's 768-d features, no head."""
    torch.manual_seed(0)
    config = abmil.ABMILGatedBaseConfig(
        gate=True, embed_dim=512, attn_dim=384, num_fc_layers=1, dropout=0.25, in_dim=768
    )
    return abmil.ABMILModel(config, num_classes=0).eval()


def test_published_keys_load_and_forward_matches(theirs: torch.nn.Module, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    preset = get_slide_encoder("feather")
    state = theirs.state_dict()
    assert all(k.startswith("model.") for k in state)  # the published layout
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    ours = preset.build().eval()
    preset.load_weights(ours, tmp_path)  # strict: every key used, none missing
    features = torch.randn(213, 768, generator=torch.Generator().manual_seed(1))
    coords = torch.zeros(213, 2, dtype=torch.int64)
    with torch.inference_mode():
        expected, _ = theirs.forward_features(features[None])
        got = preset.encode(ours, features, coords, 1024)
    assert got.shape == (preset.embedding_dim,) == (512,)
    torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=1e-5)


def test_a_checkpoint_with_a_classifier_head_loads(theirs: torch.nn.Module, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in theirs.state_dict().items()}
    state["model.classifier.weight"] = torch.zeros(108, 512)
    state["model.classifier.bias"] = torch.zeros(108)
    save_file(state, tmp_path / "model.safetensors")
    preset = get_slide_encoder("feather")
    ours = preset.build()
    preset.load_weights(ours, tmp_path)
    assert torch.equal(ours.patch_embed[0].weight, state["model.patch_embed.0.weight"])
