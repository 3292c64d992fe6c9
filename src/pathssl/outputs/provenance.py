"""What produced an output: package version and a hash of the code itself."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pathssl


@functools.cache
def code_sha256() -> str:
    """sha256 over the package's Python sources, in sorted path order."""
    root = Path(pathssl.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
