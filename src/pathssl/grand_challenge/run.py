"""The container's job: one Grand-Challenge job (inputs.json) or a local batch of slides.

process.py only calls `main`; all the work is the pathssl library's. Progress goes to stdout,
warnings and errors to stderr (the platform shows stderr as warnings); the last stderr line of
a failed job is its one-line error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pathssl.embed.arguments import add_embedding_arguments, embedding_options
from pathssl.errors import PathsslError
from pathssl.grand_challenge.sockets import (
    UNLISTED,
    JobInputs,
    SocketConfig,
    output_roles,
    read_inputs_json,
)
from pathssl.grand_challenge.termination import EXIT_CODE as TERMINATED_EXIT
from pathssl.grand_challenge.termination import Progress, Terminated, stop_on_sigterm

if TYPE_CHECKING:
    from pathssl.embed import EmbedOptions, OutputLayout
    from pathssl.embed.aggregation import SlideAggregator
    from pathssl.encoder.bundle import EncoderBundle

log = logging.getLogger("pathssl")
DEFAULT_RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "grand-challenge.json"

# The platform loads every JSON output whole into memory, and stops a job after an hour by
# default: the patch-level JSON is kept under this size by a deterministic, even subsample.
PATCH_JSON_BUDGET_BYTES = 128 * 2**20
MAX_TILES = 20_000
JSON_BYTES_PER_FEATURE = 12  # float32 as shortest decimals, measured at about 11 with commas
PATCH_TASKS = frozenset({"detection", "segmentation"})
PATCH_TASK_MIN_TISSUE = 0.1  # unicorn-baseline's min_tissue_ratio for these task types


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


def run(args: argparse.Namespace, progress: Progress) -> int:
    import torch

    from pathssl.embed import embed_slides
    from pathssl.embed.aggregation import choose_aggregator
    from pathssl.encoder.bundle import load_bundle
    from pathssl.encoder.inference import DeviceSettings
    from pathssl.grand_challenge.gpu_check import check_gpu_usable
    from pathssl.outputs.disk import check_writable

    sockets = SocketConfig.from_file(args.sockets)
    inputs_json = args.input / "inputs.json"
    job = read_inputs_json(args.input, sockets) if inputs_json.exists() else None
    progress.stage = "loading the model"
    say(check_gpu_usable(args.allow_cpu, torch.cuda.is_available, torch.version.cuda))
    bundle = load_bundle(args.model)
    progress.embedding_dim = bundle.config.embedding_dim
    say(f"device {DeviceSettings.auto().describe()}; torch {torch.__version__}")
    for line in bundle.describe():
        say(line)
    cap = tile_cap(bundle.config.embedding_dim) if args.max_tiles is None else args.max_tiles
    options = embedding_options(args, max_tiles=cap or None)
    say(f"tile cap {cap or 'none'} per slide (--max-tiles)")
    # a pretrained slide encoder (model_dir/slide_encoder/ or --slide-encoder), loaded once
    aggregator = choose_aggregator(bundle, options)
    say(f"slide embedding (image-neural-representation): {aggregator.name}")
    if job is not None:
        check_writable(args.output)
        return run_job(
            job,
            sockets,
            bundle,
            options,
            output=args.output,
            progress=progress,
            aggregator=aggregator,
        )
    say(f"no inputs.json; local batch mode over {args.input}")
    progress.stage = "embedding the slides of a local batch"
    reports = embed_slides([args.input], args.output, bundle, options, aggregator=aggregator)
    failed = [r for r in reports if r.status == "failed"]
    done = sum(r.status == "complete" for r in reports)
    reused = sum(r.status == "reused" for r in reports)
    say(
        f"{done} embedded, {reused} reused (same slide, options and model), "
        f"{len(failed)} failed in {time.perf_counter() - progress.started:.1f} s"
    )
    for r in failed:
        print(f"pathssl: FAILED {r.error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def run_job(
    job: JobInputs,
    sockets: SocketConfig,
    bundle: EncoderBundle,
    options: EmbedOptions,
    *,
    output: Path,
    progress: Progress,
    aggregator: SlideAggregator | None = None,
) -> int:
    """One Grand-Challenge job: embed into a hidden work folder under /output, then move the
    outputs the interface lists (and the task type asks for) to their sockets' paths."""
    from pathssl.embed import embed_slide
    from pathssl.outputs.disk import is_output_error, output_error

    interface = job.interface
    say(f"Grand-Challenge job, interface {interface.name}: {job.describe()}")
    roles, warning = output_roles(interface, job.task)
    if warning:
        say(f"WARNING: {warning}")
    layout = sockets.layout(interface, roles)
    options = _job_options(job, options, layout)
    work = output / f".pathssl-work-{uuid.uuid4().hex[:8]}"
    progress.slide, progress.work_dir, progress.stage = job.slide.name, work, "embedding"
    moved: list[Path] = []
    try:
        record = embed_slide(
            job.slide, work, bundle, options, title=job.slide.name, aggregator=aggregator
        )
        progress.stage = "moving the outputs into place"
        written = {
            slug: rel
            for slug, role in interface.outputs.items()
            if role in roles and (rel := _layout_path(layout, role)) not in UNLISTED.values()
        }
        record["grand_challenge"] = {
            "interface": interface.name,
            "inputs": dict(job.slugs),
            "task": job.task,
            "outputs": written,
            "unicorn_tasks": list(interface.unicorn_tasks),
        }
        (work / layout.run_record).write_text(json.dumps(record, indent=2) + "\n")
        _move_outputs(work, output, list(written.values()), moved)
    except BaseException as exc:
        for path in reversed(moved):  # all or nothing: a stopped job leaves /output empty
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and is_output_error(exc, output):
            raise output_error(exc, output) from exc  # a full or read-only /output: one line
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say_done(record["tiling"], written, output, progress)
    return 0


def _job_options(job: JobInputs, options: EmbedOptions, layout: OutputLayout) -> EmbedOptions:
    """The job's tiling by task type (as unicorn-baseline), its mask and its outputs."""
    task_type = job.task.get("task_type") if job.task else None
    if job.task and job.task.get("modality") not in (None, "vision"):
        say(
            f"WARNING: modality {job.task.get('modality')}: pathssl writes features, not the "
            "text this task is scored on"
        )
    if task_type in PATCH_TASKS:  # unicorn-baseline keeps tiles with >= 10% tissue for these
        options = replace(options, min_tissue_fraction=PATCH_TASK_MIN_TISSUE)
    return replace(options, layout=layout, tissue_mask=job.tissue_mask)


def _move_outputs(work: Path, output: Path, relative: list[str], moved: list[Path]) -> None:
    """Each output from the work folder to its socket's path; `moved` records what now exists
    (folders made, files moved) so that a failure can take it back."""
    for rel in relative:
        target = output / rel
        for parent in reversed(target.relative_to(output).parents[:-1]):
            if not (output / parent).exists():
                (output / parent).mkdir()
                moved.append(output / parent)
        os.replace(work / rel, target)
        moved.append(target)


def _say_done(tiling: dict, written: dict[str, str], output: Path, progress: Progress) -> None:
    if tiling["capped"]:
        say(f"{tiling['tiles_in_tissue']} tissue tiles, {tiling['tiles']} kept by the cap")
    say(
        f"{tiling['tiles']} tiles embedded in {time.perf_counter() - progress.started:.1f} s; "
        f"wrote {', '.join(written)} to {output}"
    )


def _layout_path(layout: OutputLayout, role: str) -> str:
    return getattr(layout, role)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    progress = Progress()
    try:
        with stop_on_sigterm(progress):
            return run(args, progress)
    except Terminated:
        if args.debug:
            raise
        print(f"pathssl: error: {progress.describe()}", file=sys.stderr, flush=True)
        return TERMINATED_EXIT
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
