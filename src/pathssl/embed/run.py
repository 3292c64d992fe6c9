"""Embed many slides: one folder per slide (named from the slide's path), a lock per slide,
resume by run identity, and the run summary. A slide's outputs are reused only when they were
made from the same file, options, model, numerics and code; anything else is redone (or, with
`mismatch="refuse"`, reported as failed), and the summary says which and why."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from pathssl.atomic import staged_outputs
from pathssl.embed.aggregation import SlideAggregator, choose_aggregator
from pathssl.embed.identity import code_note, differences, run_identity
from pathssl.embed.inputs import InputPlan, SlideInput, plan_inputs
from pathssl.embed.options import EmbedOptions
from pathssl.embed.plan_ahead import PlanAhead
from pathssl.embed.shard import Shard
from pathssl.embed.slide import embed_slide
from pathssl.encoder.bundle import EncoderBundle
from pathssl.encoder.inference import DeviceSettings
from pathssl.encoder.openvino_engine import resolve_engine
from pathssl.errors import PathsslError
from pathssl.outputs.disk import check_writable, is_output_error, output_error
from pathssl.outputs.lock import remove_stale_temporaries, slide_lock
from pathssl.outputs.run_index import write_run_index
from pathssl.outputs.slide_outputs import OutputLayout

log = logging.getLogger("pathssl")
MISMATCH = ("redo", "refuse")


@dataclass
class SlideReport:
    slide: str
    status: str  # "complete" (embedded now), "reused", "skipped" (locked) or "failed"
    output_dir: str
    tiles: int = 0
    seconds: float = 0.0
    error: str | None = None
    qc_flagged: int = 0  # tiles flagged by tile QC (ink, blur); see run.json
    qc_dropped: int = 0
    note: str | None = None  # why it was redone, or which mask it used


@dataclass(frozen=True)
class RunSettings:
    """How existing outputs are treated: `resume` reuses outputs whose run identity matches;
    a mismatch is redone, or with "refuse" reported as failed."""

    resume: bool = True
    mismatch: str = "redo"
    shard: Shard = field(default_factory=Shard)

    def __post_init__(self) -> None:
        if self.mismatch not in MISMATCH:
            raise PathsslError(f"mismatch {self.mismatch!r}: choose {' or '.join(MISMATCH)}")


@dataclass(frozen=True)
class _Context:
    """What every slide of a run shares."""

    output_root: Path
    bundle: EncoderBundle
    options: EmbedOptions
    run: RunSettings
    aggregator: SlideAggregator
    numerics: str
    ahead: PlanAhead | None = None  # plans the next slide while one embeds


def existing_identity(output_dir: Path, layout: OutputLayout) -> dict[str, Any] | None:
    """The run identity of complete outputs in output_dir (all files present), else None."""
    try:
        record = json.loads((output_dir / layout.run_record).read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") != "complete":
        return None
    if not all((output_dir / rel).exists() for rel in record.get("outputs", {}).values()):
        return None
    return record.get("run_identity") or {}


def check_engine(bundle: EncoderBundle, options: EmbedOptions) -> None:
    """The engine the options ask for can run this model: resolved (installed, on this
    device, BF16 on this CPU) and, for a reduced precision, accepted by its check."""
    settings = DeviceSettings.auto(options.device)
    engine = resolve_engine(options.engine, settings.device)
    if engine == "openvino-bf16":
        from pathssl.encoder.precision_check import require_accepted

        require_accepted(bundle, "bf16")


def numerics(options: EmbedOptions) -> str:
    """The device kind, precision and engine the features will be computed with."""
    settings = DeviceSettings.auto(options.device)
    engine = options.engine if not (options.compile and options.engine == "auto") else "pytorch"
    engine = resolve_engine(engine, settings.device)
    precision = str(settings.autocast_dtype or "fp32").replace("torch.", "")
    if engine == "openvino-bf16":
        precision = "bf16"
    return f"{settings.device.type} {precision}, {engine}"


def embed_slides(
    inputs: list[str | Path],
    output_root: str | Path,
    bundle: EncoderBundle,
    options: EmbedOptions | None = None,
    *,
    run: RunSettings | None = None,
    aggregator: SlideAggregator | None = None,
) -> list[SlideReport]:
    """Embed every slide under `inputs`, one folder each under output_root; a failing slide
    is recorded and the run goes on. Writes output_root/summary.json (summary-rankN.json for
    a shard) and index.html."""
    output_root = Path(output_root)
    options, run = options or EmbedOptions(), run or RunSettings()
    plan = plan_inputs(inputs, output_root, options.tissue_mask)
    for line in plan.notes:
        log.warning(line)
    for item in plan.skipped:
        log.warning("%s: left out: %s", item.path, item.reason)
    if not plan.slides:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in plan.skipped)
        raise PathsslError(f"no slide to embed: {reasons}")
    if run.shard.world > 1 and options.device is None and torch.cuda.is_available():
        options = replace(options, device=f"cuda:{run.shard.local_rank}")
    owned = [s for i, s in enumerate(plan.slides) if run.shard.owns(i)]
    if run.shard.world > 1:
        log.info(
            "shard %d of %d (%s): %d of %d slides",
            run.shard.rank,
            run.shard.world,
            run.shard.source,
            len(owned),
            len(plan.slides),
        )
    check_writable(output_root)  # one line before any work if the folder cannot be written
    check_engine(bundle, options)  # an unchecked BF16 model: one line, before any slide
    aggregator = aggregator or choose_aggregator(bundle, options)  # load a slide encoder once
    reports = []
    with PlanAhead(bundle, options) as ahead:
        ctx = _Context(output_root, bundle, options, run, aggregator, numerics(options), ahead)
        for slide, following in zip(owned, [*owned[1:], None], strict=True):
            try:
                reports.append(_embed_locked(slide, ctx, following))
            except OSError as exc:
                if not is_output_error(exc, output_root):
                    raise
                raise output_error(exc, output_root / slide.name) from exc  # run cannot go on
    _write_summary(output_root, bundle, options, shard=run.shard, plan=plan, reports=reports)
    return reports


def _embed_locked(
    slide: SlideInput, ctx: _Context, following: SlideInput | None = None
) -> SlideReport:
    """One slide under its lock: skipped if another process holds it, reused if its outputs
    match, else embedded (while the `following` slide is planned, if it will be embedded); a
    failure is recorded as one line. Output-side OSErrors (disk full, read-only) propagate."""
    out_dir, name = ctx.output_root / slide.name, slide.path.name
    with slide_lock(out_dir) as held:
        if not held:
            log.warning(
                "%s: another process is embedding it (lock beside %s), skipped", name, out_dir
            )
            return SlideReport(
                str(slide.path), "skipped", str(out_dir), error="locked by another process"
            )
        stale = remove_stale_temporaries(out_dir)
        if stale:
            log.info("%s: removed %d temporary files of an interrupted run", name, len(stale))
        identity = _identity(slide, ctx)
        decision = _decide(slide.path, out_dir, identity, ctx)
        if decision.status in ("reused", "failed"):
            return decision
        if following is not None and ctx.ahead is not None and _will_embed(following, ctx):
            ctx.ahead.start(following)
        return _embed_one(slide, ctx, identity, decision.note)


def _identity(slide: SlideInput, ctx: _Context) -> dict[str, Any]:
    return run_identity(
        slide,
        ctx.bundle,
        replace(ctx.options, tissue_mask=slide.mask),
        aggregator_sha256=getattr(ctx.aggregator, "sha256", None),
        numerics=ctx.numerics,
    )


def _will_embed(slide: SlideInput, ctx: _Context) -> bool:
    """Whether a slide's outputs will be made (not reused or refused), as far as can be told
    without its lock: only those are planned ahead."""
    try:
        identity = _identity(slide, ctx)
    except (OSError, PathsslError):
        return False  # its own turn reports the problem
    old = existing_identity(ctx.output_root / slide.name, ctx.options.layout)
    return _outcome(old, identity, ctx.run)[0] == "embed"


def _outcome(
    old: dict[str, Any] | None, identity: dict[str, Any], run: RunSettings
) -> tuple[str, list[str]]:
    """What becomes of existing outputs: "embed" (none, or redone), "reused" or "failed"
    (refused), and what differs."""
    if old is None:
        return "embed", []
    changed = differences(old, identity)
    if not changed and run.resume:
        return "reused", changed
    if changed and run.mismatch == "refuse":
        return "failed", changed
    return "embed", changed


def _decide(path: Path, out_dir: Path, identity: dict[str, Any], ctx: _Context) -> SlideReport:
    """Reuse, redo (note says why) or refuse the slide's existing outputs."""
    old = existing_identity(out_dir, ctx.options.layout)
    report = SlideReport(str(path), "embed", str(out_dir))
    outcome, changed = _outcome(old, identity, ctx.run)
    if old is None:
        return report
    if outcome == "reused":
        note = code_note(old, identity)
        log.info(
            "%s: outputs made by the same slide, options and model, reused%s",
            out_dir.name,
            f" ({note})" if note else "",
        )
        return replace(report, status="reused", note=note)
    why = "; ".join(changed) if changed else "--no-resume"
    if outcome == "failed":
        msg = (
            f"{out_dir}: holds outputs made differently ({why}); rerun without "
            "--on-mismatch refuse to redo them, or choose another --output"
        )
        log.error(msg)
        return replace(report, status="failed", error=msg)
    log.warning("%s: redone: existing outputs differ (%s)", out_dir.name, why)
    return replace(report, note=f"redone: {why}")


def _embed_one(
    slide: SlideInput, ctx: _Context, identity: dict[str, Any], note: str | None
) -> SlideReport:
    t0, path, options = time.perf_counter(), slide.path, ctx.options
    out_dir = ctx.output_root / slide.name
    mask_note = f"tissue mask {slide.mask}" if slide.mask and options.tissue_mask else None
    try:
        record = embed_slide(
            path,
            out_dir,
            ctx.bundle,
            replace(options, tissue_mask=slide.mask),
            aggregator=ctx.aggregator,
            identity=identity,
            plan=ctx.ahead.take(slide) if ctx.ahead is not None else None,
        )
    except PathsslError as exc:
        log.error("%s: failed: %s", path.name, exc)
        return SlideReport(str(path), "failed", str(out_dir), error=str(exc), note=note)
    except Exception as exc:  # an unexpected bug on one slide must not stop the archive
        if is_output_error(exc, out_dir.parent):
            raise
        log.exception("%s: failed unexpectedly", path.name)
        msg = f"{path}: unexpected {type(exc).__name__}: {exc}"
        return SlideReport(str(path), "failed", str(out_dir), error=msg, note=note)
    return SlideReport(
        str(path),
        "complete",
        str(out_dir),
        record["tiling"]["tiles"],
        time.perf_counter() - t0,
        qc_flagged=record["tile_qc"]["flagged"],
        qc_dropped=record["tile_qc"]["dropped"],
        note="; ".join(n for n in (note, mask_note) if n) or None,
    )


def _write_summary(
    output_root: Path,
    bundle: EncoderBundle,
    options: EmbedOptions,
    *,
    shard: Shard,
    plan: InputPlan,
    reports: list[SlideReport],
) -> None:
    """summary.json: the model, the shard, every slide asked for (with its output folder),
    which this process owned and what became of each, and every input left out."""
    owned = [s for i, s in enumerate(plan.slides) if shard.owns(i)]
    summary = {
        "model": {"name": bundle.config.name, "weights_sha256": bundle.weights_sha256},
        "shard": {**shard.describe(), "slides_owned": [s.name for s in owned]},
        "counts": {
            status: sum(r.status == status for r in reports)
            for status in ("complete", "reused", "skipped", "failed")
        },
        "slides": [asdict(r) for r in reports],
        "inputs": {s.name: str(s.path) for s in plan.slides},
        "inputs_left_out": [asdict(s) for s in plan.skipped],
        "notes": list(plan.notes),
    }
    try:
        with staged_outputs(output_root) as stage:
            stage.path(shard.summary_name).write_text(json.dumps(summary, indent=2) + "\n")
            if options.layout.preview:
                index = shard.summary_name.replace("summary", "index").replace(".json", ".html")
                write_run_index(
                    stage.path(index),
                    reports,
                    bundle.config.name,
                    bundle.weights_sha256,
                    options.layout.preview,
                )
    except OSError as exc:
        raise output_error(exc, output_root) from exc
