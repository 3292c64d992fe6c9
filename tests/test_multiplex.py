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


def _fluorescence() -> np.ndarray:
    """One channel as a fluorescence scan gives it: mostly dark, a few bright cells."""
    return ((np.random.default_rng(0).random((512, 512)) ** 4) * 4000).astype(np.uint16)


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
    before = path.read_bytes()
    with pytest.raises(SlideReadError) as info:
        open_slide(path)
    message = str(info.value)
    # one line: the file, the format, the channel count, and the fix
    assert message.startswith(f"{path}: a multiplex {kind} of {len(CHANNELS)} single-channel")
    assert "will not pick one channel" in message and "export an RGB rendering" in message
    assert "\n" not in message
    # nothing written: no file beside the image, and the image untouched
    assert [p.name for p in tmp_path.iterdir()] == ["multiplex.tif"]
    assert path.read_bytes() == before


def test_multiplex_through_the_cli_is_one_line(tmp_path: Path) -> None:
    path = write_qptiff(tmp_path / "case.qptiff")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pathssl.cli", "embed", str(path), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1  # one line, naming the file, the format and the channel count
    assert "case.qptiff" in failed[0]
    assert f"multiplex PerkinElmer/Akoya qptiff of {len(CHANNELS)} single-channel" in failed[0]
    # nothing written for the slide: the run's summary only, which records the failure
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.qptiff", "out"]
    assert "multiplex" in (out / "summary.json").read_text()


def test_rgb_and_single_channel_tiffs_still_open(tmp_path: Path) -> None:
    """An RGB TIFF, and one fluorescence channel (dark background, 12-bit data in 16-bit
    samples), open as they are; a greyscale brightfield scan is refused elsewhere
    (test_fault_catalogue_inputs)."""
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.full((64, 64, 3), 200, np.uint8), photometric="rgb")
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, _fluorescence(), photometric="minisblack")
    with open_slide(rgb) as slide:
        assert slide.dimensions == (64, 64)
        assert (slide.read_region(0, 0, 0, 64, 64) == 200).all()  # the pixels as written
    with open_slide(grey) as slide:
        assert slide.dimensions == (512, 512)
        pixels = slide.read_region(0, 0, 0, 512, 512)
    assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8
    assert (pixels == pixels[..., :1]).all()  # one channel shown as grey
    # its one channel, not another page's: never darker where the channel is stronger
    channel = _fluorescence().ravel()
    shown = pixels[..., 0].ravel()[np.argsort(channel, kind="stable")]
    assert (np.diff(shown.astype(int)) >= 0).all() and shown[0] < shown[-1]
