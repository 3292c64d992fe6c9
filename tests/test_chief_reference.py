"""CHIEF's slide encoder against the published code, same random weights in both.

The reference is models/CHIEF.py of hms-dbmi/CHIEF (AGPL-3.0: not copied into this
repository). The test reads it, with utils/utils.py beside it, from a checkout named by
PATHSSL_CHIEF_REFERENCE, or from the bare mirror /work/.mirror/hms-dbmi+CHIEF/repo with git,
and skips with the reason when neither is there. Shims, for what the slide embedding does not
use: addict (utils.py's YAML config reader imports it), and the anatomical-site text
embeddings CHIEF's constructor reads from ./model_weight/Text_emdding.pth (random here; they
are replaced by the copied weights anyway).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from pathssl.aggregation.registry import get_slide_encoder
from pathssl.errors import ModelBundleError

MIRROR = Path("/work/.mirror/hms-dbmi+CHIEF/repo")
FILES = ("models/CHIEF.py", "utils/utils.py")


def _reference_sources(dest: Path) -> None:
    checkout = os.environ.get("PATHSSL_CHIEF_REFERENCE")
    for name in FILES:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if checkout:
            target.write_bytes((Path(checkout) / name).read_bytes())
        else:
            shown = subprocess.run(
                ["git", f"--git-dir={MIRROR}", "show", f"HEAD:{name}"],
                capture_output=True,
                check=True,
            )
            target.write_bytes(shown.stdout)


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    checkout = os.environ.get("PATHSSL_CHIEF_REFERENCE")
    if not (checkout and Path(checkout, FILES[0]).is_file()) and not MIRROR.is_dir():
        pytest.skip("CHIEF's code absent: set PATHSSL_CHIEF_REFERENCE to a hms-dbmi/CHIEF checkout")
    root = tmp_path_factory.mktemp("chief_ref")
    _reference_sources(root)
    shimmed = ("addict", "utils", "utils.utils", "chief_reference_model")
    saved = {name: sys.modules[name] for name in shimmed if name in sys.modules}
    addict = types.ModuleType("addict")
    addict.Dict = dict
    sys.modules["addict"] = addict
    sys.modules["utils"] = types.ModuleType("utils")
    sys.modules["utils.utils"] = _load("utils.utils", root / "utils" / "utils.py")
    try:
        yield _load("chief_reference_model", root / "models" / "CHIEF.py"), root
    finally:  # only what this fixture put there (torch imports submodules lazily meanwhile)
        for name in shimmed:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def models(reference: tuple) -> tuple[torch.nn.Module, torch.nn.Module]:
    module, root = reference
    (root / "model_weight").mkdir()
    torch.save(torch.randn(19, 768), root / "model_weight" / "Text_emdding.pth")
    cwd = Path.cwd()
    os.chdir(root)  # CHIEF's constructor reads ./model_weight/Text_emdding.pth
    try:
        torch.manual_seed(0)
        ref = module.CHIEF(size_arg="small", dropout=True, n_classes=2).eval()
    finally:
        os.chdir(cwd)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = get_slide_encoder("chief").build()
    ours.load_state_dict(ref.state_dict(), strict=True)  # CHIEF_pretraining.pth's key names
    return ref, ours


@pytest.mark.parametrize("n", [1, 300])
@torch.no_grad()
def test_forward_matches_reference(models: tuple, n: int) -> None:
    ref, ours = models
    features = torch.randn(n, 768, generator=torch.Generator().manual_seed(n))
    site = torch.tensor([13])  # the anatomical site changes the logits, not the WSI feature
    expected = ref(features, site)["WSI_feature"][0]
    preset = get_slide_encoder("chief")
    got = preset.encode(ours, features, torch.zeros(n, 2, dtype=torch.int64), 512)
    assert got.shape == (preset.embedding_dim,) == (768,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    other_site = ref(features, torch.tensor([2]))["WSI_feature"][0]
    torch.testing.assert_close(other_site, expected)


def test_loads_the_published_file_strictly(tmp_path: Path) -> None:
    """(Runs without the reference: the saved model is a randomised one of ours, whose key
    names test_forward_matches_reference checks against CHIEF's.)"""
    ref = get_slide_encoder("chief").build()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p))
    torch.save(ref.state_dict(), tmp_path / "CHIEF_pretraining.pth")
    preset = get_slide_encoder("chief")
    model = preset.build()
    preset.load_weights(model, tmp_path)
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    state = ref.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "CHIEF_pretraining.pth")
    with pytest.raises(ModelBundleError, match="1 unexpected"):
        preset.load_weights(preset.build(), tmp_path)
    with pytest.raises(ModelBundleError, match=r"CHIEF_pretraining\.pth"):
        preset.load_weights(preset.build(), tmp_path / "empty")
