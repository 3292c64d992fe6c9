"""Tile features staged in a plain file while they are produced, then read memory-mapped.

Features are written with `os.pwrite`, so a disk that fills mid-slide is a clean `OSError`
(ENOSPC), never a crash inside HDF5 (whose error path can segfault when a write fails).
features.h5 is written once at the end, from the finished array, after a space check.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pathssl.errors import PathsslError


class FeatureStore:
    """(rows, dim) float32 rows written at their indices; `finish()` returns them read-only."""

    def __init__(self, path: Path, rows: int, dim: int) -> None:
        self.path, self.rows, self.dim = Path(path), rows, dim
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def write(self, idx: np.ndarray, values: np.ndarray) -> None:
        """Rows `idx` (ascending) get `values`; each contiguous run is one write."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        row_bytes = self.dim * 4
        for run_idx, run_values in zip(
            np.split(idx, breaks), np.split(values, breaks), strict=True
        ):
            data = memoryview(run_values.tobytes())
            offset = int(run_idx[0]) * row_bytes
            while data:
                n = os.pwrite(self._fd, data, offset)
                data, offset = data[n:], offset + n

    def finish(self) -> np.ndarray:
        self.close()
        expected = self.rows * self.dim * 4
        if self.path.stat().st_size != expected:
            raise PathsslError(f"{self.path}: feature file is incomplete")
        if expected == 0:
            return np.zeros((self.rows, self.dim), np.float32)
        return np.memmap(self.path, np.float32, "r", shape=(self.rows, self.dim))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
