"""The container's job: one Grand-Challenge job (inputs.json) or a local batch of slides.

process.py only calls `main`; all the work is the pathssl library's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from pathssl.cli import add_embedding_arguments, embedding_options
from pathssl.encoder.bundle import load_bundle
from pathssl.errors import PathsslError
from pathssl.grand_challenge.sockets import SocketConfig, read_inputs_json
from pathssl.outputs.disk import check_writable, is_output_error, output_error
from pathssl.pipeline import embed_slide, embed_slides

log = logging.getLogger("pathssl")
DEFAULT_RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "grand-challenge.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="process.py",
        description="pathssl Grand-Challenge algorithm: with /input/inputs.json, one job; "
        "without it, every slide under --input, one folder each under --output.",
    )
    p.add_argument("--input", type=Path, default=Path("/input"))
    p.add_argument("--output", type=Path, default=Path("/output"))
    add_embedding_arguments(p)
    p.add_argument(
        "--sockets",
        type=Path,
        default=DEFAULT_RESOURCES,
        help="socket configuration (default: resources/grand-challenge.json)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _describe_environment(bundle) -> None:
    from pathssl.embedding import DeviceSettings

    print(
        f"pathssl: device {DeviceSettings.auto().describe()}; torch {torch.__version__}, "
        f"CUDA available: {torch.cuda.is_available()}",
        flush=True,
    )
    for line in bundle.describe():
        print(f"pathssl: {line}", flush=True)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    sockets = SocketConfig.from_file(args.sockets)
    bundle = load_bundle(args.model)
    _describe_environment(bundle)
    options = embedding_options(args)
    inputs_json = args.input / "inputs.json"
    if inputs_json.exists():
        job = read_inputs_json(args.input, sockets)
        print(
            f"pathssl: Grand-Challenge job: slide {job.slide}"
            + (f", tissue mask {job.tissue_mask}" if job.tissue_mask else ""),
            flush=True,
        )
        options = replace(
            options,
            layout=sockets.layout,
            tissue_mask=job.tissue_mask,
            mpp=args.mpp if args.mpp is not None else job.mpp,
        )
        check_writable(args.output)
        try:
            record = embed_slide(job.slide, args.output, bundle, options, title=job.slide.name)
        except OSError as exc:  # a full or read-only /output: one line, not a traceback
            if not is_output_error(exc, args.output):
                raise
            raise output_error(exc, args.output) from exc
        print(
            f"pathssl: {record['tiling']['tiles']} tiles embedded in "
            f"{time.perf_counter() - t0:.1f} s; outputs in {args.output}",
            flush=True,
        )
        return 0
    print(f"pathssl: no inputs.json; local batch mode over {args.input}", flush=True)
    reports = embed_slides([args.input], args.output, bundle, options)
    failed = [r for r in reports if r.status == "failed"]
    done = sum(r.status == "complete" for r in reports)
    print(
        f"pathssl: {done} embedded, {len(reports) - done - len(failed)} skipped (complete), "
        f"{len(failed)} failed in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    for r in failed:
        print(f"pathssl: FAILED {r.error}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
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
