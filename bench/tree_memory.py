"""Peak memory of a process tree (the benchmark process and its loader workers), sampled
from /proc: used by embed_throughput.py."""

from __future__ import annotations

import os
import threading


class TreeMemory:
    """Peak memory (MB) of this process and all its descendants, sampled: the sum of their
    proportional set sizes (PSS), so pages that forked workers share are counted once."""

    def __init__(self, interval: float = 0.5) -> None:
        # reading smaps_rollup walks page tables; sampled often it steals a core (measured)
        self.interval, self.peak_mb, self._stop = interval, 0.0, threading.Event()

    @staticmethod
    def _pss_mb(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                return [int(c) for c in fh.read().split()]
        except OSError:
            return []

    def total_mb(self) -> float:
        total, stack = 0.0, [os.getpid()]
        while stack:
            pid = stack.pop()
            total += self._pss_mb(pid)
            stack.extend(self._children(pid))
        return total

    def __enter__(self) -> TreeMemory:
        self.peak_mb = self.total_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self.total_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
