"""Multiplex images are refused with one line naming the format and the fix, never read as
one channel silently (qptiff and OME-TIFF written here with tifffile in their layouts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathssl.errors import SlideReadError
from pathssl.slide.opening import open_slide

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["DAPI", "CD8", "PD-L1", "CK"]
QPI = (
    '<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription>'
    "<DescriptionVersion>2</DescriptionVersion><ImageType>FullResolution</ImageType>"
    "<Name>{}</Name></PerkinElmer-QPI-ImageDescription>"
)


def channels() -> np.ndarray:
    return (np.random.default_rng(0).random((4, 512, 512)) * 4000).astype(np.uint16)


def write_qptiff(path: Path) -> Path:
    """One full-resolution page per channel, each with its QPI description (as Vectra and
    PhenoImager write them; their pyramid and thumbnail pages are left out here)."""
    with tifffile.TiffWriter(path) as tif:
        for data, name in zip(channels(), CHANNELS, strict=True):
            tif.write(
                data,
                photometric="minisblack",
                tile=(256, 256),
                description=QPI.format(name),
                metadata=None,
            )
    return path


def write_ome_tiff(path: Path) -> Path:
    tifffile.imwrite(
        path,
        channels(),
        ome=True,
        tile=(256, 256),
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": CHANNELS}},
    )
    return path


@pytest.mark.parametrize(
    ("write", "kind"),
    [(write_qptiff, "PerkinElmer/Akoya qptiff"), (write_ome_tiff, "OME-TIFF")],
)
def test_multiplex_is_refused_naming_format_and_fix(tmp_path: Path, write, kind: str) -> None:
    path = write(tmp_path / "multiplex.tif")
    with pytest.raises(SlideReadError, match=f"multiplex {kind} of 4 single-channel") as info:
        open_slide(path)
    assert "export an RGB rendering" in str(info.value) and str(path) in str(info.value)


def test_multiplex_through_the_cli_is_one_line(tmp_path: Path) -> None:
    path = write_qptiff(tmp_path / "case.qptiff")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pathssl.cli", "embed", str(path), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "multiplex PerkinElmer/Akoya qptiff" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.json"]


def test_rgb_and_single_channel_tiffs_still_open(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.full((64, 64, 3), 200, np.uint8), photometric="rgb")
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, channels()[0], photometric="minisblack")
    for path in (rgb, grey):
        with open_slide(path) as slide:
            assert slide.dimensions[0] > 0
