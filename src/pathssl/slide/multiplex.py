"""Multiplex images (PerkinElmer/Akoya qptiff, OME-TIFF with channels, other multi-page
single-channel TIFFs): refused with one line, never read as one channel silently.

OpenSlide opens such a file's first page and Pillow its first frame; both would embed one
channel of several as if it were the slide. Rendering channels to RGB needs a choice of
channels and colours that only the user can make, so the user makes it (and the export
records it).
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from pathssl.errors import SlideReadError
from pathssl.slide.diagnose import permission_denied

SINGLE_CHANNEL_MODES = {"1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
MAX_PAGES_SCANNED = 64


def multiplex_channels(path: Path) -> tuple[str, int] | None:
    """(kind, channels) when `path` is a TIFF with several full-size single-channel pages."""
    try:
        image = Image.open(path)
    except PermissionError as exc:  # the first look at the file: say so now, in one line
        raise SlideReadError(permission_denied(path)) from exc
    except Exception:
        return None  # not something Pillow reads (e.g. BigTIFF): other backends decide
    with image:
        if image.format != "TIFF":
            return None
        description = str(image.tag_v2.get(270, ""))
        size = image.size
        channels = 0
        try:
            for page in range(MAX_PAGES_SCANNED):
                image.seek(page)
                if image.size == size and image.mode in SINGLE_CHANNEL_MODES:
                    channels += 1
        except EOFError:
            pass  # no more pages
        except Exception:
            return None  # a damaged page chain: the readers report it
    if "PerkinElmer-QPI" in description:
        kind = "PerkinElmer/Akoya qptiff"
    elif "<OME" in description:
        kind = "OME-TIFF"
        found = re.search(r'SizeC="(\d+)"', description)
        channels = max(channels, int(found.group(1)) if found else 0)
    else:
        kind = "multi-page TIFF"
    return (kind, channels) if channels > 1 else None


def refuse_multiplex(path: Path) -> None:
    found = multiplex_channels(path)
    if found is None:
        return
    kind, channels = found
    raise SlideReadError(
        f"{path}: a multiplex {kind} of {channels} single-channel images; pathssl embeds "
        "RGB brightfield or single-image fluorescence and will not pick one channel: export "
        "an RGB rendering of the channels you want (e.g. QuPath's image export, or "
        "`bfconvert -channel N`) and embed that"
    )
