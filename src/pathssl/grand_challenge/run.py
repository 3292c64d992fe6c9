"""The container's job: one Grand-Challenge job (inputs.json) or a local batch of slides.

process.py only calls `main`; all the work is the pathssl library's. Progress goes to stdout,
warnings and errors to stderr (the platform shows stderr as warnings); the last stderr line of
a failed job is its one-line error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from pathssl.embed.arguments import add_embedding_arguments, embedding_options
from pathssl.errors import PathsslError
from pathssl.grand_challenge.sockets import SocketConfig, read_inputs_json

log = logging.getLogger("pathssl")
DEFAULT_RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "grand-challenge.json"

# The platform loads every JSON output whole into memory, and stops a job after an hour by
# default: the patch-level JSON is kept under this size by a deterministic, even subsample.
PATCH_JSON_BUDGET_BYTES = 128 * 2**20
MAX_TILES = 20_000
JSON_BYTES_PER_FEATURE = 12  # float32 as shortest decimals, measured at about 11 with commas


def tile_cap(embedding_dim: int) -> int:
    """Tiles per slide the container embeds by default for an encoder of this width."""
    per_tile = embedding_dim * JSON_BYTES_PER_FEATURE + 64
    return min(MAX_TILES, PATCH_JSON_BUDGET_BYTES // per_tile)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="process.py",
        description="pathssl Grand-Challenge algorithm: with /input/inputs.json, one job of the "
        "interface its input sockets name; without it, every slide under --input, one folder "
        "each under --output.",
    )
    p.add_argument(
        "--input", type=Path, default=Path("/input"), help="job or slide folder (default: /input)"
    )
    p.add_argument(
        "--output", type=Path, default=Path("/output"), help="output folder (default: /output)"
    )
    add_embedding_arguments(p)
    p.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        help=f"tiles per slide, evenly subsampled beyond it (default: {MAX_TILES}, fewer for "
        f"wide encoders so the patch JSON stays under {PATCH_JSON_BUDGET_BYTES // 2**20} MiB; "
        "0: no cap)",
    )
    p.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run on the CPU when a GPU is given but PyTorch cannot use it (default: stop)",
    )
    p.add_argument(
        "--sockets",
        type=Path,
        default=DEFAULT_RESOURCES,
        help="sockets and interfaces (default: resources/grand-challenge.json)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _configure_logging() -> None:
    """INFO to stdout, WARNING and above to stderr."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.addFilter(lambda record: record.levelno < logging.WARNING)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    for handler in (to_stdout, to_stderr):
        handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [to_stdout, to_stderr]
    root.setLevel(logging.INFO)


def say(message: str) -> None:
    stream = sys.stderr if message.startswith("WARNING") else sys.stdout
    print(f"pathssl: {message}", file=stream, flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from pathssl.embed import embed_slide, embed_slides
    from pathssl.encoder.bundle import load_bundle
    from pathssl.encoder.inference import DeviceSettings
    from pathssl.grand_challenge.gpu_check import check_gpu_usable
    from pathssl.outputs.disk import check_writable, is_output_error, output_error

    t0 = time.perf_counter()
    sockets = SocketConfig.from_file(args.sockets)
    say(check_gpu_usable(args.allow_cpu, torch.cuda.is_available, torch.version.cuda))
    bundle = load_bundle(args.model)
    say(f"device {DeviceSettings.auto().describe()}; torch {torch.__version__}")
    for line in bundle.describe():
        say(line)
    cap = tile_cap(bundle.config.embedding_dim) if args.max_tiles is None else args.max_tiles
    options = embedding_options(args, max_tiles=cap or None)
    say(f"tile cap {cap or 'none'} per slide (--max-tiles)")
    inputs_json = args.input / "inputs.json"
    if inputs_json.exists():
        job = read_inputs_json(args.input, sockets)
        say(
            f"Grand-Challenge job, interface {job.interface.name}: slide {job.slide}"
            + (f", tissue mask {job.tissue_mask}" if job.tissue_mask else "")
        )
        options = replace(
            options, layout=sockets.layout(job.interface), tissue_mask=job.tissue_mask
        )
        check_writable(args.output)
        try:
            record = embed_slide(job.slide, args.output, bundle, options, title=job.slide.name)
        except OSError as exc:  # a full or read-only /output: one line, not a traceback
            if not is_output_error(exc, args.output):
                raise
            raise output_error(exc, args.output) from exc
        tiling = record["tiling"]
        if tiling["capped"]:
            say(f"{tiling['tiles_in_tissue']} tissue tiles, {tiling['tiles']} kept by the cap")
        say(
            f"{tiling['tiles']} tiles embedded in {time.perf_counter() - t0:.1f} s; "
            f"outputs in {args.output}"
        )
        return 0
    say(f"no inputs.json; local batch mode over {args.input}")
    reports = embed_slides([args.input], args.output, bundle, options)
    failed = [r for r in reports if r.status == "failed"]
    done = sum(r.status == "complete" for r in reports)
    say(
        f"{done} embedded, {len(reports) - done - len(failed)} skipped (complete), "
        f"{len(failed)} failed in {time.perf_counter() - t0:.1f} s"
    )
    for r in failed:
        print(f"pathssl: FAILED {r.error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        return run(args)
    except PathsslError as exc:
        if args.debug:
            raise
        print(f"pathssl: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # the last line is what a Grand-Challenge user sees
        if args.debug:
            raise
        log.exception("unexpected failure")
        print(
            f"pathssl: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr, flush=True
        )
        return 3
