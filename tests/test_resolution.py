"""Microns per pixel: override > metadata > a clear error; placeholders are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_slide
from PIL import Image

from pathssl.errors import ResolutionError
from pathssl.slide import open_slide, resolve_mpp


def test_metadata(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        res = resolve_mpp(slide)
    assert res.mpp == pytest.approx(0.499)
    assert "aperio" in res.source


def test_override_wins(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        assert resolve_mpp(slide, 0.25).mpp == 0.25
        assert resolve_mpp(slide, 0.25).source == "override"


def test_missing_is_an_error_naming_file_and_fix() -> None:
    path = shared_slide("aperio_jp2k_TCGA-CR-7395-01A-01-TS1.svs")
    with open_slide(path) as slide, pytest.raises(ResolutionError) as err:
        resolve_mpp(slide)
    message = str(err.value)
    assert str(path) in message and "--mpp" in message and "\n" not in message


def test_72_dpi_placeholder_refused(tmp_path: Path) -> None:
    path = tmp_path / "dpi72.tif"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path, dpi=(72, 72))
    with open_slide(path) as slide, pytest.raises(ResolutionError, match="no scanner"):
        resolve_mpp(slide)


def test_tiff_resolution_tags_in_centimetres(tmp_path: Path) -> None:
    path = tmp_path / "cm.tif"
    # 40,000 pixels per cm = 0.25 um per pixel
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(
        path, resolution=40_000.0, resolution_unit=3
    )
    with open_slide(path) as slide:
        assert resolve_mpp(slide).mpp == pytest.approx(0.25)


def test_implausible_override(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide, pytest.raises(ResolutionError):
        resolve_mpp(slide, 400.0)
