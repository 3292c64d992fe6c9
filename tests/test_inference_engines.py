"""The embedding engines on real tiles: channels-last and OpenVINO against PyTorch's own
features, the engine choice, and the peers' copy of the bundled weights (bench/peers/)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pathssl.encoder.bundle import build_module, load_bundle
from pathssl.encoder.import_weights import config_from_preset
from pathssl.encoder.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def _real_tiles(cmu_slide: Path, config, normalised: bool = True) -> torch.Tensor:
    """16 (3, S, S) tiles of CMU tissue at the bundle's input size, NCHW: normalised, or
    uint8 as read."""
    from pathssl.encoder.bundle import normalise
    from pathssl.slide import open_slide

    size = config.input_size_px
    with open_slide(cmu_slide) as slide:
        region = slide.read_region(500, 1000, 0, 4 * size, 4 * size)
    grid = torch.from_numpy(region).permute(2, 0, 1).unflatten(1, (4, size)).unflatten(3, (4, size))
    tiles = grid.permute(1, 3, 0, 2, 4).reshape(16, 3, size, size).contiguous()
    return normalise(tiles, config) if normalised else tiles


def test_channels_last_inference_matches_nchw(cmu_slide: Path) -> None:
    """The embedding engine runs NHWC (channels last) on every device: the bundled model's
    features on real tiles equal NCHW's within 1e-5 (relative to their largest)."""
    from pathssl.encoder.inference import DeviceSettings, prepare_module

    bundle = load_bundle(ROOT / "model")
    x = _real_tiles(cmu_slide, bundle.config)
    with torch.inference_mode():
        nchw = bundle.module.to(memory_format=torch.contiguous_format)(x)
        module = prepare_module(bundle, DeviceSettings.auto("cpu"))
        nhwc = module(x.contiguous(memory_format=torch.channels_last))
    assert next(module.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert (nhwc - nchw).abs().max() <= 1e-5 * nchw.abs().max()


@pytest.mark.parametrize("bundle_kind", ["bundled-resnet18", "vit-class+mean"])
def test_openvino_engine_matches_pytorch(cmu_slide: Path, tmp_path: Path, bundle_kind: str) -> None:
    """The CPU default engine (OpenVINO, f32) gives PyTorch's features within 1e-5 of the
    largest, on real tiles, for the bundled CNN and for a ViT with class + mean pooling, for
    any batch size (the batch dimension is dynamic)."""
    pytest.importorskip("openvino", reason="pip install -r requirements.txt")
    from pathssl.encoder.export import save_bundle
    from pathssl.encoder.inference import (
        DeviceSettings,
        engine_description,
        engine_input,
        prepare_module,
    )

    if bundle_kind == "bundled-resnet18":
        bundle = load_bundle(ROOT / "model")
    else:
        config = config_from_preset(PRESETS["virchow2"], "test")
        config = replace(
            config,
            architecture="vit_tiny_patch16_224",
            timm_kwargs={"img_size": 112, "global_pool": "", "reg_tokens": 4},
            embedding_dim=384,
            input_size_px=112,
        )
        save_bundle(build_module(config).eval(), config, tmp_path / "vit")
        bundle = load_bundle(tmp_path / "vit")
    tiles = _real_tiles(cmu_slide, bundle.config, normalised=False)
    settings = DeviceSettings.auto("cpu")
    with torch.inference_mode():
        pytorch = prepare_module(bundle, settings, engine="pytorch")
        reference = pytorch(engine_input(pytorch, tiles, bundle.config))
        engine = prepare_module(bundle, settings, engine="openvino")
        assert engine_description(engine).startswith("openvino")
        assert engine.normalises_input  # the mean and std are in the OpenVINO graph
        for batch in (tiles, tiles[:5]):
            out = engine(engine_input(engine, batch, bundle.config))
            expected = reference[: len(batch)]
            assert out.shape == expected.shape
            assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_engine_choice() -> None:
    from pathssl.encoder.openvino_engine import openvino_version, resolve_engine
    from pathssl.errors import PathsslError

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_engine("auto", gpu) == "pytorch"
    assert resolve_engine("auto", cpu) == ("openvino" if openvino_version() else "pytorch")
    assert resolve_engine("pytorch", cpu) == "pytorch"
    with pytest.raises(PathsslError, match="CPU only"):
        resolve_engine("openvino", gpu)
    with pytest.raises(PathsslError, match="unknown engine"):
        resolve_engine("tensorrt", cpu)


def test_peer_comparison_runs_the_bundled_weights() -> None:
    """bench/peers/ gives every peer timm's resnet18 with the bundle's safetensors: the same
    features as pathssl's own module, so the side-by-side compares the same encoder."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "peers" / "_common.py"
    spec = importlib.util.spec_from_file_location("peer_common", path)
    assert spec is not None and spec.loader is not None
    peer_common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_common)

    bundle = load_bundle(None)
    peer, mean, std = peer_common.load_resnet18(bundle.path)
    assert (tuple(mean), tuple(std)) == (tuple(bundle.config.mean), tuple(bundle.config.std))
    # the peers tile as pathssl embeds this bundle: its tile side at its um/px
    tiling = (bundle.config.input_size_px, bundle.config.target_mpp)
    assert peer_common.bundle_tiling(bundle.path) == tiling
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, theirs = bundle.module(x), peer(x)
    assert ours.shape == theirs.shape == (4, 512)
    assert torch.allclose(ours, theirs, atol=1e-5)
