"""Process-wide settings that must be made before PyTorch loads."""

from __future__ import annotations

import os
import sys


def configure_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE) unless the
    user chose otherwise. `embed` reads tiles in threads beside PyTorch's OpenMP threads; with
    spinning they fight for the same cores: on 2 cores, embedding with a small encoder reading
    at level 0 ran at 263-267 tiles/s passive against 211-213 spinning, and the default model
    was unchanged within noise (alternating `embed_slide` runs). Only effective before PyTorch's
    OpenMP runtime loads, so entry points call it first."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
