"""The run's log: log.csv (one row per log step) and, where installed, TensorBoard."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Mapping, Sequence
from pathlib import Path


class RunLog:
    """Rows of `fields`, written by rank 0 only. On resume, rows past the checkpoint's step
    are dropped first: they will be written again, exactly, by the resumed run."""

    def __init__(
        self,
        out: Path,
        fields: Sequence[str],
        *,
        resume_step: int,
        enabled: bool,
        tensorboard: bool,
    ) -> None:
        self.fields, self.enabled = list(fields), enabled
        self.path = Path(out) / "log.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, self.fields)
            writer.writeheader()
            writer.writerows(rows)
        if tensorboard:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_step)

    def write(self, row: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.fields).writerow({k: row[k] for k in self.fields})
        if self.tb is not None:
            for key in self.fields:
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
