"""Output-side faults: a full disk (before and during a slide), a read-only output folder, a
killed run's temporary files, two processes on one output folder. Disks are real tmpfs
mounts (root, as on the development and CI machines; skipped where mounting is refused)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_process_py

from pathssl.embed import EmbedOptions, embed_slides
from pathssl.encoder.bundle import load_bundle
from pathssl.errors import PathsslError
from pathssl.outputs.lock import slide_lock

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pathssl.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_disk_too_small_is_refused_before_work(
    tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        done = run_cli(
            "embed", str(cmu_slide), "--output", str(disk / "out"), "--model", str(tiny_bundle_dir)
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        failed = [ln for ln in done.stderr.splitlines() if ln.startswith("FAILED")]
        assert len(failed) == 1 and "free some space or choose another --output" in failed[0]
        assert sorted(files_under(disk / "out")) == ["index.html", "summary.json"]  # no slide


def test_disk_filling_during_a_slide_is_one_line_and_leaves_nothing(
    tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pathssl.embed.slide as pipeline

    # the space check passes (as when another process fills the disk after it)
    monkeypatch.setattr(pipeline, "check_free_space", lambda *a, **k: None)
    with tmpfs(tmp_path / "disk", "40k") as disk:
        with pytest.raises(PathsslError, match=r"disk full while writing .* nothing of this slide"):
            embed_slides([cmu_slide], disk / "out", load_bundle(tiny_bundle_dir))
        assert files_under(disk / "out") == []


def test_read_only_output_is_one_line(
    tmp_path: Path, cmu_slide: Path, tiny_bundle_dir: Path
) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        done = run_cli(
            "embed", str(cmu_slide), "--output", str(ro / "out"), "--model", str(tiny_bundle_dir)
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "read-only file system; choose a writable --output" in last


def test_killed_runs_temporaries_are_removed(tmp_path: Path, cmu_slide: Path, tiny_bundle) -> None:
    slide_dir = tmp_path / "out" / "CMU-1-Small-Region"
    (slide_dir / "images" / "feature-map").mkdir(parents=True)
    leftovers = [
        slide_dir / ".features.tmp-0badc0de.h5",
        slide_dir / ".features.scratch-0badc0de",
        slide_dir / "images" / "feature-map" / ".feature-map.tmp-0badc0de.mha",
    ]
    for p in leftovers:
        p.write_bytes(b"partial")
    reports = embed_slides([cmu_slide], tmp_path / "out", tiny_bundle)
    assert reports[0].status == "complete"
    assert not any(p.exists() for p in leftovers)
    assert not [f for f in files_under(slide_dir) if ".tmp-" in f or ".scratch-" in f]


def test_a_slide_held_by_another_process_is_skipped(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    out = tmp_path / "out"
    with slide_lock(out / "CMU-1-Small-Region") as held:
        assert held
        reports = embed_slides([cmu_slide], out, tiny_bundle, EmbedOptions())
    assert reports[0].status == "skipped" and reports[0].error == "locked by another process"
    assert not (out / "CMU-1-Small-Region").exists()


def test_a_killed_holder_releases_its_lock(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "slide"
    code = (
        "import sys, time\n"
        "from pathssl.outputs.lock import slide_lock\n"
        f"with slide_lock({str(folder)!r}) as held:\n"
        "    print(held, flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with slide_lock(folder) as held:
            assert not held
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert (folder.parent / ".slide.lock").exists()  # a killed holder leaves its file ...
        with slide_lock(folder) as held:
            assert held  # ... which does not block
        assert not (folder.parent / ".slide.lock").exists()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_grand_challenge_job_on_a_full_output_is_one_line(tmp_path: Path) -> None:
    """process.py on the test case with /output on a 40 KB disk."""
    with tmpfs(tmp_path / "output", "40k") as output:
        done = run_process_py(ROOT / "test" / "input" / "wsi", output)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "free some space" in last
        assert files_under(output) == []
