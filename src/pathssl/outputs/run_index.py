"""index.html: one page to scan a run in a browser: every slide's preview and summary line
(status, tiles, tile QC, time, error), the model above. Written beside summary.json; the
previews are linked by relative path, so the folder can be moved or shared as a whole."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Protocol

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
td, th { border-bottom: 1px solid #ddd; padding: 6px 10px; text-align: left; vertical-align: top; }
td.num { text-align: right; }
tr.failed td { background: #fde8e8; }
img { width: 420px; border: 1px solid #ccc; }
"""


class SlideRow(Protocol):
    slide: str
    status: str
    output_dir: str
    tiles: int
    seconds: float
    error: str | None
    qc_flagged: int
    qc_dropped: int


def write_run_index(
    path: Path, reports: Sequence[SlideRow], model_name: str, weights_sha256: str, preview: str
) -> None:
    """The page at `path`; `preview` is each slide's preview file name in its folder."""
    root = path.parent
    counts = {
        s: sum(r.status == s for r in reports) for s in ("complete", "reused", "skipped", "failed")
    }
    rows = []
    for r in reports:
        folder = Path(r.output_dir)
        image = folder / preview
        rel = image.relative_to(root).as_posix() if image.is_relative_to(root) else None
        picture = (
            f'<a href="{escape(rel)}"><img src="{escape(rel)}" alt="preview of '
            f'{escape(Path(r.slide).name)}" loading="lazy"></a>'
            if rel and image.is_file()
            else "no preview"
        )
        detail = escape(r.error or getattr(r, "note", None) or "")
        rows.append(
            f'<tr class="{escape(r.status)}"><td>{picture}</td>'
            f"<td><b>{escape(Path(r.slide).name)}</b><br>{escape(r.status)}<br>{detail}</td>"
            f'<td class="num">{r.tiles}</td><td class="num">{r.qc_flagged} / {r.qc_dropped}</td>'
            f'<td class="num">{r.seconds:.1f}</td></tr>'
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pathssl run: {len(reports)} slides</title>
<style>{STYLE}</style></head>
<body>
<h1>pathssl run: {len(reports)} slides</h1>
<p>model {escape(model_name)} (sha256 {escape(weights_sha256[:12])}):
{counts["complete"]} embedded, {counts["reused"]} reused (same slide, options and model),
{counts["skipped"]} skipped (held by another process), {counts["failed"]} failed.
Previews: tissue outline green, tiles flagged by tile QC magenta, tile features as RGB on the
right. Reused slides show the preview of the run that made them.</p>
<table>
<tr><th>preview</th><th>slide</th><th>tiles</th><th>QC flagged / dropped</th><th>seconds</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
