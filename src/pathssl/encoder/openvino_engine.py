"""The tile encoder run by OpenVINO on the CPU, in full precision (or BF16, when checked).

On this project's 2-core CPU it gives the encoder 1.59x the tiles/s of PyTorch eager NCHW and
1.26x channels-last PyTorch for the bundled ResNet-18 (bench/cpu_engine.py), with features
equal to PyTorch's within 4e-7 of the largest. The model is converted from the PyTorch module
in memory when a run starts (about 1 s), with a dynamic batch dimension. Precision is pinned
to f32: the plugin's default hint ran 3x faster but 9e-3 off, which is not the same model.
`--engine openvino-bf16` runs BF16 where the CPU has it (AVX512_BF16 or AMX), and only for a
model whose BF16 features and linear probe were measured against f32 and accepted
(`pathssl check-precision`, encoder/precision_check.py).
"""

from __future__ import annotations

import atexit
import gc
import warnings

import torch

from pathssl.encoder.engines import ENGINES, PRECISION
from pathssl.errors import PathsslError

# Every converted model stays alive until the interpreter exits and is released there, from
# the main thread: an OpenVINO model freed by a garbage collection that happens to run in a
# reading thread can take the process down (a segmentation fault seen once in CI).
_LIVE: list[OpenVinoEncoder] = []


@atexit.register
def _release() -> None:
    _LIVE.clear()
    gc.collect()


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]


def resolve_engine(engine: str, device: torch.device) -> str:
    """ "auto": OpenVINO on a CPU where it is installed, else PyTorch."""
    if engine not in ENGINES:
        raise PathsslError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "openvino" if device.type == "cpu" and openvino_version() else "pytorch"
    if engine in PRECISION:
        if device.type != "cpu":
            raise PathsslError(f"--engine {engine} runs on the CPU only, not {device}")
        if not openvino_version():
            raise PathsslError(
                f"--engine {engine}: openvino is not installed (pip install openvino)"
            )
    if engine == "openvino-bf16" and not cpu_has_bf16():
        raise PathsslError(
            "--engine openvino-bf16: this CPU has no BF16 instructions (AVX512_BF16 or AMX); "
            "use --engine openvino (f32)"
        )
    return engine


def cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoEncoder(torch.nn.Module):
    """(N, 3, S, S) float tiles on the 0-255 scale -> (N, D) features. The encoder's mean and
    std are in the OpenVINO graph (folded into the first layer by the plugin), so tiles go in
    as read: no normalised copy is made in Python (`normalises_input`)."""

    normalises_input = True

    def __init__(
        self,
        module: torch.nn.Module,
        input_size_px: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        precision: str = "f32",
    ) -> None:
        super().__init__()
        import openvino as ov

        example = torch.zeros(1, 3, input_size_px, input_size_px)
        with warnings.catch_warnings():  # the converter traces with torch.jit (deprecated;
            # shape checks become constants: the tile size is fixed, the batch stays dynamic)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            model = ov.convert_model(
                module.eval(),
                example_input=example,
                input=[ov.PartialShape([-1, 3, input_size_px, input_size_px])],
            )
        model = _with_normalisation(model, mean, std)
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        }
        self.core = ov.Core()  # outlives its compiled model
        self.compiled = self.core.compile_model(model, "CPU", config)
        self.description = f"openvino {openvino_version()} (CPU, {precision})"
        self.input_memory_format = torch.contiguous_format  # NCHW, as it was converted
        _LIVE.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.compiled(x.contiguous().numpy())[0])


def _with_normalisation(model, mean: tuple[float, ...], std: tuple[float, ...]):
    """(x - 255 mean) / (255 std) per channel, as the graph's first step (NCHW input)."""
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().model().set_layout("NCHW")
    ppp.input().preprocess().mean([255.0 * m for m in mean]).scale([255.0 * s for s in std])
    return ppp.build()
