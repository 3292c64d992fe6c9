"""Microns per pixel: override > metadata > a clear error; placeholders are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
from conftest import shared_slide
from PIL import Image

from pathssl.errors import ResolutionError
from pathssl.slide import open_slide, resolve_mpp


def test_metadata(cmu_slide: Path) -> None:
    """The value is the scanner's, as OpenSlide reports it, and the source says which field."""
    with open_slide(cmu_slide) as slide:
        res = resolve_mpp(slide)
    props = openslide.OpenSlide(str(cmu_slide)).properties
    assert props["openslide.vendor"] == "aperio"
    from_openslide = (float(props["openslide.mpp-x"]) + float(props["openslide.mpp-y"])) / 2
    assert res.mpp == pytest.approx(from_openslide) and res.mpp == pytest.approx(0.499)
    assert res.source == "openslide.mpp-x/y (aperio)"


def test_override_wins(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        assert slide.metadata_mpp is not None  # the slide has its own value ...
        res = resolve_mpp(slide, 0.25)
    assert res.mpp == 0.25 and isinstance(res.mpp, float)  # ... the override wins over it
    assert res.source == "override"


def test_missing_is_an_error_naming_file_and_fix() -> None:
    path = shared_slide("aperio_jp2k_TCGA-CR-7395-01A-01-TS1.svs")
    with open_slide(path) as slide, pytest.raises(ResolutionError) as err:
        resolve_mpp(slide)
    message = str(err.value)
    assert message.startswith(f"{path}: no microns-per-pixel in the metadata")
    assert "pass the scan's resolution with --mpp" in message and "\n" not in message


def test_72_dpi_placeholder_refused(tmp_path: Path) -> None:
    path = tmp_path / "dpi72.tif"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path, dpi=(72, 72))
    with open_slide(path) as slide, pytest.raises(ResolutionError) as err:
        resolve_mpp(slide)
    message = str(err.value)  # names the file, the value, where it came from, and the fix
    assert message.startswith(f"{path}: metadata (TIFF resolution tags) says 352.8 microns")
    assert "no scanner's resolution" in message and "--mpp" in message and "\n" not in message


def test_tiff_resolution_tags_in_centimetres(tmp_path: Path) -> None:
    path = tmp_path / "cm.tif"
    # 40,000 pixels per cm = 0.25 um per pixel
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(
        path, resolution=40_000.0, resolution_unit=3
    )
    with open_slide(path) as slide:
        res = resolve_mpp(slide)
    assert res.mpp == pytest.approx(0.25)
    assert res.source == "TIFF resolution tags"


def test_implausible_override(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide, pytest.raises(ResolutionError) as err:
        resolve_mpp(slide, 400.0)
    message = str(err.value)  # the override is refused, not replaced by the metadata's value
    assert message.startswith(f"{cmu_slide}: --mpp 400.0 is outside 0.05-50.0 microns per pixel")
    assert "\n" not in message
