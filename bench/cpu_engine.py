"""Encoder ceiling on this CPU for the candidate inference engines, in one run (this machine
is shared and noisy: the engines alternate, each timed several times), with each engine's
largest feature difference from PyTorch NCHW eager (relative to the largest feature).

    python bench/cpu_engine.py [--model model/] [--batch 64] [--repeats 3]
    python bench/cpu_engine.py --architecture vit_small_patch16_224 --size 224

Engines: PyTorch eager NCHW and channels last (NHWC), torch.compile (NHWC), ONNX Runtime and
OpenVINO (if installed: pip install onnxruntime openvino onnx onnxscript).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _engines(module: torch.nn.Module, x: torch.Tensor, tmp: Path) -> dict[str, Callable]:
    engines: dict[str, Callable] = {"pytorch NCHW": lambda: module(x)}
    x_cl = x.contiguous(memory_format=torch.channels_last)
    nhwc = copy.deepcopy(module).to(memory_format=torch.channels_last)  # its own copy
    engines["pytorch NHWC"] = lambda: nhwc(x_cl)
    try:
        compiled = torch.compile(copy.deepcopy(module).to(memory_format=torch.channels_last))
        compiled(x_cl)
        engines["torch.compile NHWC"] = lambda: compiled(x_cl)
    except Exception as exc:  # no C++ compiler, or an unsupported model
        print(f"torch.compile: unavailable ({type(exc).__name__}: {str(exc)[:120]})")
    onnx_path = tmp / "encoder.onnx"
    try:
        torch.onnx.export(module, (x,), str(onnx_path), dynamo=False)
    except Exception as exc:
        print(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:160]}")
        return engines
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        xn = x.numpy()
        engines["onnxruntime"] = lambda: torch.from_numpy(session.run(None, {name: xn})[0])
    except ImportError:
        print("onnxruntime: not installed")
    try:
        import openvino as ov

        core = ov.Core()
        xn = x.numpy()
        for hint in ("f32", None):  # f32: full precision; None: the plugin's default
            config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
            model = core.compile_model(str(onnx_path), "CPU", config)
            engines[f"openvino ({hint or 'default precision'})"] = lambda model=model: (
                torch.from_numpy(model(xn)[0])
            )
    except ImportError:
        print("openvino: not installed")
    return engines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="bundle (default: model/)")
    p.add_argument("--architecture", default=None, help="a timm model with random weights")
    p.add_argument("--size", type=int, default=None, help="tile px (default: the bundle's)")
    p.add_argument("--batch", type=int, default=64, help="tiles per batch (default: 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.architecture:
        import timm

        module = timm.create_model(args.architecture, pretrained=False, num_classes=0)
        size = args.size or 224
        label = f"{args.architecture} (random weights)"
    else:
        from pathssl.encoder.bundle import load_bundle

        bundle = load_bundle(args.model or Path(__file__).resolve().parents[1] / "model")
        module, size, label = (
            bundle.module,
            args.size or bundle.config.input_size_px,
            bundle.config.name,
        )
    module = module.eval()
    x = torch.randn(args.batch, 3, size, size)
    print(f"{label} at {size} px, batch {args.batch}, {torch.get_num_threads()} threads")
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        reference = module(x)
        engines = _engines(module, x, Path(tmp))
        rates: dict[str, list[float]] = {k: [] for k in engines}
        diffs = {}
        for name, run in engines.items():
            out = run()
            diffs[name] = float((out - reference).abs().max() / reference.abs().max())
        for _ in range(args.repeats):
            for name, run in engines.items():
                run()
                t0 = time.perf_counter()
                run()
                run()
                rates[name].append(2 * args.batch / (time.perf_counter() - t0))
    base = np.median(rates["pytorch NCHW"])
    for name in engines:
        median = np.median(rates[name])
        print(
            f"{name:20s} {median:7.1f} tiles/s ({median / base:.2f}x NCHW)  "
            f"runs {[round(r) for r in rates[name]]}  max rel diff {diffs[name]:.1e}"
        )


if __name__ == "__main__":
    main()
