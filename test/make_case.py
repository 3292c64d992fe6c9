"""Rebuild test/input the way Grand-Challenge stores an upload: converted by panimg itself.

Needs panimg and OpenSlide in a separate environment (not runtime dependencies):

    python -m venv /tmp/panimg && /tmp/panimg/bin/pip install panimg==0.18.2 pyvips-binary \
        openslide-python==1.4.7 openslide-bin==4.0.1.2
    /tmp/panimg/bin/python test/make_case.py tests/data/CMU-1-Small-Region.svs

panimg 0.18.2 turned the CMU Aperio slide into a 6-level pyramidal TIFF named <uuid>.tif
whose Aperio description keeps 0.499 um/px (its TIFF resolution tags say 1 mm per pixel;
OpenSlide reads the description).
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from panimg import convert
from panimg.models import ImageType

HERE = Path(__file__).resolve().parent
SOCKET = "whole-slide-image"


def main(slide: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        shutil.copy(slide, src)
        result = convert(input_directory=src, output_directory=dst)
        tiffs = [f for f in result.new_image_files if f.image_type == ImageType.TIFF]
        if len(result.new_images) != 1 or len(tiffs) != 1:
            sys.exit(f"panimg did not make one TIFF: {result.file_errors}")
        image = next(iter(result.new_images))
        folder = HERE / "input" / "images" / SOCKET
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy(tiffs[0].file, folder / tiffs[0].file.name)
    inputs = [
        {
            "interface": {
                "title": "Whole Slide Image",
                "slug": SOCKET,
                "kind": "Image",
                "super_kind": "Image",
                "relative_path": f"images/{SOCKET}",
                "pk": 1,
            },
            "value": None,
            "file": None,
            "image": {"pk": str(image.pk), "name": image.name},
            "pk": 1,
        }
    ]
    (HERE / "input" / "inputs.json").write_text(json.dumps(inputs, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
