"""Run the encoder over a slide's tiles and stream the features into an HDF5 dataset."""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from pathssl.encoder.bundle import EncoderBundle, EncoderConfig, normalise
from pathssl.errors import PathsslError
from pathssl.tiles.loading import iter_batches

log = logging.getLogger("pathssl")


@dataclass(frozen=True)
class DeviceSettings:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32 (the CPU default)

    @classmethod
    def auto(cls, device: str | None = None) -> DeviceSettings:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type == "cuda":
            # native bf16 only (Ampere and newer); a T4 emulates it slowly, so it gets fp16
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            return cls(dev, torch.bfloat16 if bf16 else torch.float16)
        return cls(dev, None)

    def describe(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            return f"cuda ({name}, autocast {str(self.autocast_dtype).replace('torch.', '')})"
        return f"cpu ({torch.get_num_threads()} threads, fp32)"


def prepare_module(
    bundle: EncoderBundle,
    settings: DeviceSettings,
    compile_module: bool = False,
    engine: str = "pytorch",
) -> torch.nn.Module:
    """The encoder ready to run: on its device, channels last; with `engine` "openvino" (CPU
    only), converted for OpenVINO; see openvino_engine.py and `engine_description`. Prepared
    once per bundle, device and engine, and reused for the next slides of a run."""
    key = (str(settings.device), engine, compile_module)
    with _PREPARING:  # prepared in a thread while the slide is planned: never twice
        cache = _PREPARED.setdefault(bundle.module, {})
        if key not in cache:
            cache[key] = _prepare(bundle, settings, compile_module, engine)
        return cache[key]


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PREPARING = threading.Lock()
atexit.register(_PREPARED.clear)  # prepared engines released before the interpreter's teardown


def _prepare(
    bundle: EncoderBundle, settings: DeviceSettings, compile_module: bool, engine: str
) -> torch.nn.Module:
    # NHWC on every device: on this 2-core CPU 1.26x (ResNet-18, 112 px) and 1.36x (ResNet-50,
    # 224 px) the tiles/s of NCHW, features equal within 3e-7; ViTs neither gain nor lose
    module = bundle.module.to(settings.device).eval().to(memory_format=torch.channels_last)
    if engine in ("openvino", "openvino-bf16"):
        converted = _openvino(bundle, module, engine)
        if converted is not None:
            return converted
    if compile_module:
        module = torch.compile(module)
    return module


def _openvino(
    bundle: EncoderBundle, module: torch.nn.Module, engine: str
) -> torch.nn.Module | None:
    """The encoder converted for OpenVINO; None (PyTorch runs it, with a warning) where the
    converter does not take the architecture in f32. BF16 runs only for a model whose check
    accepted it, and never falls back to another precision."""
    from pathssl.encoder.openvino_engine import PRECISION, OpenVinoEncoder
    from pathssl.encoder.precision_check import require_accepted

    cfg = bundle.config
    # OpenVINO's ReLU turns NaN into 0: broken weights would give finite nonsense there
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        raise PathsslError(
            f"model {cfg.name}: its weights hold NaN or infinite values; the "
            "bundle is corrupt: export or import it again"
        )
    precision = PRECISION[engine]
    if precision != "f32":
        require_accepted(bundle, precision)
    try:
        return OpenVinoEncoder(module, cfg.input_size_px, cfg.mean, cfg.std, precision)
    except Exception as exc:  # an architecture the converter does not take: say so
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        if precision != "f32":
            raise PathsslError(
                f"--engine {engine}: OpenVINO cannot convert {cfg.name} ({reason}); "
                "use --engine pytorch"
            ) from exc
        log.warning("OpenVINO cannot convert %s (%s); running it with PyTorch", cfg.name, reason)
        return None


def engine_input(
    module: torch.nn.Module, tiles: torch.Tensor, config: EncoderConfig
) -> torch.Tensor:
    """Tiles (uint8, or float on the 0-255 scale) as `module` takes them: normalised and
    channels last for PyTorch; for an engine that normalises inside its graph, only made float
    (in the layout it asks for). One pass over the batch either way."""
    layout = getattr(module, "input_memory_format", torch.channels_last)
    if getattr(module, "normalises_input", False):
        return tiles.to(torch.float32).contiguous(memory_format=layout)
    return normalise(tiles, config).contiguous(memory_format=layout)


def engine_description(module: torch.nn.Module) -> str:
    return getattr(module, "description", f"pytorch {torch.__version__}")


def embed_batches(
    module: torch.nn.Module,
    bundle: EncoderBundle,
    settings: DeviceSettings,
    loader: torch.utils.data.DataLoader,
    write: Callable[[np.ndarray, np.ndarray], None],
    *,
    batch_size: int,
    label: str,
    on_batch: Callable[[int], None] | None = None,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    inspect: Callable[[np.ndarray, np.ndarray], None] | None = None,
    overlap: bool = True,
) -> int:
    """Embed every tile the loader yields; `write(sorted_indices, features)` stores them.
    `augment(uint8 tiles, batch number)` -> float tiles on the 0-255 scale, if given;
    `inspect(uint8 tiles, indices)` sees each batch as read (per-tile quality measures).
    With `overlap`, the encoder runs one batch behind in its own thread, so that reading,
    inspecting, converting and writing a batch overlap with encoding the one before (for an
    engine that leaves cores free, as a GPU does); without, it runs in this thread, between
    reads (a CPU engine on every core: `reads_in_phases`). The same batches, in the same
    order, either way. Returns the number of tiles written."""
    encode = _encoder_call(module, settings)
    store = partial(
        _store, write=write, dim=bundle.config.embedding_dim, label=label, on_batch=on_batch
    )
    written, pending = 0, None
    with ThreadPoolExecutor(1, thread_name_prefix="pathssl-encode") as pool:
        for batch_number, (tiles, indices) in enumerate(iter_batches(loader, batch_size)):
            with torch.inference_mode():
                if inspect is not None:
                    inspect(tiles.cpu().numpy(), indices.numpy())
                if augment is not None:
                    tiles = augment(tiles, batch_number)
                x = engine_input(
                    module, tiles.to(settings.device, non_blocking=True), bundle.config
                )
            submitted = (pool.submit(encode, x), indices.numpy())
            written += store(*pending) if pending is not None else 0
            pending = submitted
            if not overlap:
                written += store(*pending)
                pending = None
        written += store(*pending) if pending is not None else 0
    return written


def _encoder_call(
    module: torch.nn.Module, settings: DeviceSettings
) -> Callable[[torch.Tensor], np.ndarray]:
    """module(x) as float32 numpy, for the encoding thread: inference mode and autocast are
    per thread in PyTorch, so they are entered there."""

    def encode(x: torch.Tensor) -> np.ndarray:
        autocast = (
            torch.autocast(settings.device.type, dtype=settings.autocast_dtype)
            if settings.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return module(x).float().cpu().numpy()

    return encode


def _store(
    features: Future,
    indices: np.ndarray,
    *,
    write: Callable[[np.ndarray, np.ndarray], None],
    dim: int,
    label: str,
    on_batch: Callable[[int], None] | None,
) -> int:
    """Check one batch's features and write them in tile order; the number written."""
    out = features.result()
    if out.ndim != 2 or out.shape[1] != dim:
        raise PathsslError(
            f"{label}: encoder gave features of shape {out.shape}, config says "
            f"{dim} per tile; fix embedding_dim in the model config"
        )
    if not np.isfinite(out).all():
        raise PathsslError(
            f"{label}: the encoder produced NaN or infinite features; the model "
            "weights are broken (check the bundle) or the input tiles are corrupt"
        )
    order = np.argsort(indices)
    write(indices[order], out[order])
    if on_batch is not None:
        on_batch(len(order))
    return len(order)


def batch_augmentation(
    copy: int, input_px: int, seed: int = 0
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """One random augmentation per batch, shared by all its tiles (as Giga-SSL precomputes
    its augmented copies), seeded by (seed, copy, batch number): reproducible."""
    from pathssl.tiles.augment import ViewSpec, make_view

    spec = ViewSpec(size_px=input_px, scale=(0.7, 1.0))

    def apply(tiles: torch.Tensor, batch_number: int) -> torch.Tensor:
        batch_seed = (seed * 1_000_003 + copy) * 1_000_033 + batch_number
        views = [make_view(t, spec, torch.Generator().manual_seed(batch_seed)) for t in tiles]
        return torch.stack(views) * 255.0

    return apply
