"""Reading slides by content, regions, discovery, and the bad-file errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CMU_SLIDE, SHARED_WSI, shared_slide

from pathssl.errors import SlideReadError
from pathssl.slide import find_slides, open_slide


def test_aperio_levels_mpp_and_region(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        assert slide.backend == "openslide"
        assert slide.dimensions == (2220, 2967)
        assert slide.metadata_mpp.mpp_x == pytest.approx(0.499)
        region = slide.read_region(1000, 1500, 0, 64, 48)
    assert region.shape == (48, 64, 3) and region.dtype == np.uint8
    assert region.std() > 5  # tissue, not a blank fill


def test_opened_by_content_not_suffix(cmu_slide: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "3f2a-uuid.bin"
    shutil.copy(cmu_slide, renamed)
    with open_slide(renamed) as slide, open_slide(cmu_slide) as original:
        assert slide.backend == "openslide"
        np.testing.assert_array_equal(
            slide.read_region(0, 0, 0, 32, 32), original.read_region(0, 0, 0, 32, 32)
        )


def test_outside_the_slide_reads_as_background(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as slide:
        region = slide.read_region(2200, 2950, 0, 40, 40)
    assert (region[-10:, -10:] == 255).all()


def test_ndpi_pyramid_and_mpp() -> None:
    with open_slide(shared_slide("hamamatsu_test3-DAPI-2-387.ndpi")) as slide:
        assert len(slide.levels) == 7
        assert slide.levels[1].downsample == pytest.approx(2.0)
        assert slide.metadata_mpp.mpp_x == pytest.approx(0.22817, rel=1e-3)
        assert slide.read_region(0, 0, 3, 20, 10).shape == (10, 20, 3)


def test_plain_tiff_falls_back_to_pillow_without_mpp() -> None:
    with open_slide(shared_slide("plain_tiff_IHC_kidney-48-5.tif")) as slide:
        assert slide.backend == "pillow"
        assert slide.dimensions == (1493, 901)
        assert slide.metadata_mpp is None


@pytest.mark.parametrize("name", ["openslide-python_boxes.tiff", "openslide-python_boxes_0.dcm"])
def test_generic_tiff_and_dicom(name: str) -> None:
    with open_slide(shared_slide(f"synthetic/{name}")) as slide:
        assert slide.backend == "openslide"
        w, h = slide.dimensions
        assert slide.read_region(0, 0, 0, w, h).shape == (h, w, 3)


def test_mha_reads_regions_and_spacing(cmu_slide: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    with open_slide(cmu_slide) as slide:
        rgb = slide.read_region(0, 0, 0, 300, 200)
    image = sitk.GetImageFromArray(rgb, isVector=True)
    image.SetSpacing((0.0005, 0.0005))  # millimetres
    path = tmp_path / "small.mha"
    sitk.WriteImage(image, str(path))
    with open_slide(path) as mha:
        assert mha.backend == "simpleitk"
        assert mha.metadata_mpp.mpp_x == pytest.approx(0.5)
        np.testing.assert_array_equal(mha.read_region(10, 20, 0, 50, 40), rgb[20:60, 10:60])


def test_find_slides_sorted_and_one_per_dicom_folder(tmp_path: Path, cmu_slide: Path) -> None:
    (tmp_path / "b").mkdir()
    shutil.copy(cmu_slide, tmp_path / "b" / "z.svs")
    shutil.copy(cmu_slide, tmp_path / "a.svs")
    (tmp_path / "dicom").mkdir()
    for i in range(2):
        (tmp_path / "dicom" / f"part_{i}.dcm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a slide")
    found = find_slides([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.svs",
        "b/z.svs",
        "dicom/part_0.dcm",
    ]


def test_folder_without_slides(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SlideReadError, match="no slides found"):
        find_slides([tmp_path])


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.svs"
    path.touch()
    with pytest.raises(SlideReadError, match="empty"):
        open_slide(path)


def test_text_renamed_svs(tmp_path: Path) -> None:
    path = tmp_path / "fake.svs"
    path.write_text("this is not a slide\n" * 100)
    with pytest.raises(SlideReadError, match="not a format"):
        open_slide(path)


def test_truncated_slide_fails_cleanly(cmu_slide: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.svs"
    path.write_bytes(cmu_slide.read_bytes()[: cmu_slide.stat().st_size // 3])
    with pytest.raises(SlideReadError, match=r"truncated|corrupt|not a format"):  # noqa: SIM117
        with open_slide(path) as slide:
            w, h = slide.dimensions
            slide.read_region(0, 0, 0, w, h)


@pytest.mark.parametrize(
    "name, x, y, level, w, h",
    [
        ("aperio_CMU-1-Small-Region.svs", 1000, 1500, 0, 300, 200),
        ("aperio_CMU-1-Small-Region.svs", 2100, 2900, 0, 200, 150),  # past the edge
        ("hamamatsu_test3-DAPI-2-387.ndpi", 0, 0, 3, 256, 128),
        ("synthetic/openslide-python_boxes_0.dcm", 0, 0, 0, 300, 250),
    ],
)
def test_native_read_matches_openslide_public_api(
    name: str, x: int, y: int, level: int, w: int, h: int
) -> None:
    """The straight-into-numpy read must give the pixels openslide-python's own API gives."""
    import openslide

    from pathssl.slide.samples import composite_on_white

    path = CMU_SLIDE if name.startswith("aperio_CMU") else shared_slide(name)
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as osr:
        assert slide._native_read is not None
        public = np.asarray(osr.read_region((x, y), level, (w, h)))
        expected = composite_on_white(public, slide._background).astype(int)
        region = slide.read_region(x, y, level, w, h)
        image = np.asarray(slide.read_region_image(x, y, level, w, h))
    assert region.flags.c_contiguous and region.shape == (h, w, 3)
    assert np.abs(region.astype(int) - expected).max() <= 1  # premultiplied rounding
    np.testing.assert_array_equal(image, region)


def test_truncated_tiff_is_called_truncated(cmu_slide: Path, tmp_path: Path) -> None:
    for fraction in (50, 3):  # a fiftieth and a third of the real SVS
        path = tmp_path / f"truncated-{fraction}.svs"
        path.write_bytes(cmu_slide.read_bytes()[: cmu_slide.stat().st_size // fraction])
        with pytest.raises(SlideReadError, match=r"truncated: .* copy or download the slide"):
            open_slide(path)


def test_dicom_without_image_type_is_not_called_corrupt(tmp_path: Path) -> None:
    """The real openslide-python DICOM fixture with its ImageType element cut out."""
    import struct

    src = SHARED_WSI / "synthetic"
    if not (src / "openslide-python_boxes_0.dcm").exists():
        pytest.skip(f"{src} not present (../shared/data is only on development and CI machines)")
    for name in ("openslide-python_boxes_0.dcm", "openslide-python_boxes_1.dcm"):
        shutil.copy(src / name, tmp_path / name)
    path = tmp_path / "openslide-python_boxes_0.dcm"
    data = path.read_bytes()
    at = data.find(b"\x08\x00\x08\x00CS")  # (0008,0008) ImageType, explicit VR little endian
    assert at > 0
    length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    path.write_bytes(data[:at] + data[at + 8 + length :])
    with pytest.raises(SlideReadError, match=r"ImageType attribute .* is not truncated") as info:
        open_slide(path)
    assert "corrupt" not in str(info.value)
