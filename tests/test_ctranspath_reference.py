"""The CTransPath tile preset (CHIEF's tile encoder) against CHIEF's own code.

CHIEF builds CTransPath with its models/ctran.py (a ConvStem given to timm 0.5.4's Swin-T as
its patch embedding) and loads CHIEF_CTransPath.pth into it. CHIEF's code is AGPL-3.0: not
copied here; it is read from a checkout named by PATHSSL_CHIEF_REFERENCE or from the bare
mirror /work/.mirror/hms-dbmi+CHIEF/repo, and the tests skip without it.

- The stem alone, against ctran.py's ConvStem under the installed timm (one import line
  shimmed: to_2tuple from its timm 1.x path).
- The whole model, against ctran.py's ConvStem inside timm 0.5.4's Swin (unzipped from the
  timm 0.5.4 wheel into PATHSSL_TIMM_0_5_4, default /tmp/timm054; run in a subprocess, as two
  timm versions cannot share one interpreter): its state dict, saved as CHIEF saves it, goes
  through the preset's old_swin_to_timm into the preset's model, and the features must match.
  CHIEF's "modified timm 0.5.4" differs from timm 0.5.4 by taking embed_layer, which the
  subprocess supplies by replacing the module's PatchEmbed with ConvStem.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from pathssl.encoder.bundle import build_module, load_weights
from pathssl.encoder.ctranspath_layers import ConvStem, old_swin_to_timm
from pathssl.encoder.import_weights import config_from_preset, map_keys, read_checkpoint
from pathssl.encoder.presets import get_preset

MIRROR = Path("/work/.mirror/hms-dbmi+CHIEF/repo")
TIMM_0_5_4 = Path(os.environ.get("PATHSSL_TIMM_0_5_4", "/tmp/timm054"))


@pytest.fixture(scope="module")
def ctran_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkout = os.environ.get("PATHSSL_CHIEF_REFERENCE")
    target = tmp_path_factory.mktemp("ctran") / "ctran.py"
    if checkout and Path(checkout, "models", "ctran.py").is_file():
        target.write_bytes(Path(checkout, "models", "ctran.py").read_bytes())
    elif MIRROR.is_dir():
        shown = subprocess.run(
            ["git", f"--git-dir={MIRROR}", "show", "HEAD:models/ctran.py"],
            capture_output=True,
            check=True,
        )
        target.write_bytes(shown.stdout)
    else:
        pytest.skip("CHIEF's code absent: set PATHSSL_CHIEF_REFERENCE to a hms-dbmi/CHIEF checkout")
    return target


def _module(path: Path, tmp_path: Path) -> types.ModuleType:
    """ctran.py under the installed timm: its to_2tuple import from timm's old module path
    (gone from timm 1.x) is the one line changed, to the same function's new path."""
    text = path.read_text().replace(
        "from timm.models.layers.helpers import to_2tuple", "from timm.layers import to_2tuple"
    )
    (tmp_path / "ctran_timm1.py").write_text(text)
    spec = importlib.util.spec_from_file_location(
        "chief_reference_ctran", tmp_path / "ctran_timm1.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def test_stem_matches_chief(ctran_py: Path, tmp_path: Path) -> None:
    reference = (
        _module(ctran_py, tmp_path).ConvStem(embed_dim=96, norm_layer=torch.nn.LayerNorm).eval()
    )
    ours = ConvStem(embed_dim=96, norm_layer=torch.nn.LayerNorm).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected = reference(x)  # (B, 56 * 56, 96)
    got = ours(x)  # NHWC, as timm's Swin takes it
    assert got.shape == (2, 56, 56, 96)
    torch.testing.assert_close(got.reshape(2, -1, 96), expected, atol=1e-6, rtol=1e-6)


REFERENCE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    import timm
    assert timm.__version__ == "0.5.4", timm.__version__
    import timm.models.swin_transformer as swin
    sys.path.insert(0, sys.argv[2])
    import ctran
    swin.PatchEmbed = ctran.ConvStem  # CHIEF's timm passes embed_layer=ConvStem here
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    model.head = torch.nn.Identity()  # as Get_CHIEF_patch_feature.py does
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for name, b in model.named_buffers():
            if "running" in name:
                b.copy_(torch.rand_like(b) + 0.5)
    model.eval()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    torch.save({"model": model.state_dict()}, sys.argv[3] + "/CHIEF_CTransPath.pth")
    torch.save({"x": x, "y": y}, sys.argv[3] + "/io.pt")
    """
)


@torch.no_grad()
def test_whole_model_matches_chief_on_timm_0_5_4(ctran_py: Path, tmp_path: Path) -> None:
    if not (TIMM_0_5_4 / "timm" / "__init__.py").is_file():
        pytest.skip(f"{TIMM_0_5_4}: no timm 0.5.4 (unzip its wheel there; see the docstring)")
    script = tmp_path / "reference.py"
    script.write_text(REFERENCE_SCRIPT)
    subprocess.run(
        [sys.executable, str(script), str(TIMM_0_5_4), str(ctran_py.parent), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    preset = get_preset("ctranspath")
    model = build_module(config_from_preset(preset, "test")).eval()
    published = read_checkpoint(tmp_path / "CHIEF_CTransPath.pth")
    assert "layers.0.downsample.reduction.weight" in published  # timm 0.5.4's layout
    state = old_swin_to_timm(map_keys(published, preset), model)
    load_weights(model, state, "CHIEF_CTransPath.pth", "ctranspath")  # every tensor, strictly
    io = torch.load(tmp_path / "io.pt", weights_only=True)  # tensors only
    got = model(io["x"])
    assert got.shape == (3, preset.embedding_dim) == (3, 768)
    torch.testing.assert_close(got, io["y"], atol=1e-5, rtol=1e-5)
