"""Embed many slides: one folder per slide, a lock per slide, resume, and the run summary."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from pathssl.embed.aggregation import SlideAggregator, default_aggregator
from pathssl.embed.options import EmbedOptions
from pathssl.embed.slide import embed_slide
from pathssl.encoder.bundle import EncoderBundle
from pathssl.errors import PathsslError
from pathssl.outputs.atomic import staged_outputs
from pathssl.outputs.disk import (
    check_writable,
    is_output_error,
    output_error,
)
from pathssl.outputs.lock import remove_stale_temporaries, slide_lock
from pathssl.outputs.run_index import write_run_index
from pathssl.outputs.slide_outputs import OutputLayout
from pathssl.slide.opening import find_slides, slide_name

log = logging.getLogger("pathssl")


@dataclass
class SlideReport:
    slide: str
    status: str  # "complete", "skipped" or "failed"
    output_dir: str
    tiles: int = 0
    seconds: float = 0.0
    error: str | None = None
    qc_flagged: int = 0  # tiles flagged by tile QC (ink, blur); see run.json
    qc_dropped: int = 0


def is_complete(output_dir: Path, bundle: EncoderBundle, layout: OutputLayout) -> bool:
    """A slide is done when its run record exists, names the same model and all its outputs
    are present."""
    record_path = output_dir / layout.run_record
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("status") != "complete":
        return False
    if record.get("model", {}).get("weights_sha256") != bundle.weights_sha256:
        return False
    return all((output_dir / rel).exists() for rel in record.get("outputs", {}).values())


def embed_slides(
    inputs: list[str | Path],
    output_root: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions | None = None,
    resume: bool = True,
    aggregator: SlideAggregator | None = None,
) -> list[SlideReport]:
    """Embed every slide under `inputs`, one folder each under output_root; a failing slide
    is recorded and the run goes on. Writes output_root/summary.json."""
    output_root = Path(output_root)
    options = options or EmbedOptions()
    slides = find_slides(inputs)
    aggregator = aggregator or default_aggregator(bundle.path)  # load a slide encoder once
    names: list[str] = []
    for path in slides:  # over the whole list, so names do not depend on the sharding
        names.append(slide_name(path, names))
    shard = Shard.from_env()
    if shard.world > 1:
        if options.device is None and torch.cuda.is_available():
            options = replace(options, device=f"cuda:{shard.local_rank}")
        log.info(
            "shard %d of %d: %d of %d slides",
            shard.rank,
            shard.world,
            len(slides[shard.rank :: shard.world]),
            len(slides),
        )
    check_writable(output_root)  # one line before any work if the folder cannot be written
    reports: list[SlideReport] = []
    for path, name in list(zip(slides, names, strict=True))[shard.rank :: shard.world]:
        try:
            reports.append(
                _embed_locked(path, output_root / name, bundle, options, resume, aggregator)
            )
        except OSError as exc:
            if not is_output_error(exc, output_root):
                raise
            raise output_error(exc, output_root / name) from exc  # the run cannot go on
    try:
        with staged_outputs(output_root) as stage:
            summary = {
                "model": {"name": bundle.config.name, "weights_sha256": bundle.weights_sha256},
                "slides": [asdict(r) for r in reports],
            }
            stage.path(shard.summary_name).write_text(json.dumps(summary, indent=2) + "\n")
            if options.layout.preview:
                write_run_index(
                    stage.path(
                        shard.summary_name.replace("summary", "index").replace(".json", ".html")
                    ),
                    reports,
                    bundle.config.name,
                    bundle.weights_sha256,
                    options.layout.preview,
                )
    except OSError as exc:
        raise output_error(exc, output_root) from exc
    return reports


def _embed_locked(
    path: Path,
    out_dir: Path,
    bundle: EncoderBundle,
    options: EmbedOptions,
    resume: bool,
    aggregator: SlideAggregator,
) -> SlideReport:
    """One slide under its lock: skipped if another process holds it or it is complete;
    a failure is recorded as one line. Output-side OSErrors (disk full, read-only) propagate."""
    with slide_lock(out_dir) as held:
        if not held:
            log.warning(
                "%s: another process is embedding it (lock beside %s), skipped", path.name, out_dir
            )
            return SlideReport(
                str(path), "skipped", str(out_dir), error="locked by another process"
            )
        stale = remove_stale_temporaries(out_dir)
        if stale:
            log.info("%s: removed %d temporary files of an interrupted run", path.name, len(stale))
        if resume and is_complete(out_dir, bundle, options.layout):
            log.info("%s: outputs complete, skipped", path.name)
            return SlideReport(str(path), "skipped", str(out_dir))
        t0 = time.perf_counter()
        try:
            record = embed_slide(path, out_dir, bundle, options, aggregator)
        except PathsslError as exc:
            log.error("%s: failed: %s", path.name, exc)
            return SlideReport(str(path), "failed", str(out_dir), error=str(exc))
        except Exception as exc:  # an unexpected bug on one slide must not stop the archive
            if is_output_error(exc, out_dir.parent):
                raise
            log.exception("%s: failed unexpectedly", path.name)
            msg = f"{path}: unexpected {type(exc).__name__}: {exc}"
            return SlideReport(str(path), "failed", str(out_dir), error=msg)
        return SlideReport(
            str(path),
            "complete",
            str(out_dir),
            record["tiling"]["tiles"],
            time.perf_counter() - t0,
            qc_flagged=record["tile_qc"]["flagged"],
            qc_dropped=record["tile_qc"]["dropped"],
        )


@dataclass(frozen=True)
class Shard:
    """This process's share of a slide list under torchrun or Slurm: slides rank, rank+world,
    ... (disjoint and deterministic); one GPU per process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        import os

        env = os.environ
        world = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", "1")))
        rank = int(env.get("RANK", env.get("SLURM_PROCID", "0")))
        local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
        if not 0 <= rank < world:
            raise PathsslError(f"RANK {rank} is outside WORLD_SIZE {world}")
        return cls(rank, world, local)

    @property
    def summary_name(self) -> str:
        return "summary.json" if self.world == 1 else f"summary-rank{self.rank}.json"
