"""Per-generation metrics: a CSV file and TensorBoard event files in the run directory."""

from __future__ import annotations

import csv
import pathlib
from typing import Mapping

from tensorboardX import SummaryWriter

COLUMNS = ("generation", "fitness_max", "fitness_mean", "fitness_min", "fitness_std", "best_so_far",
           "gens_per_sec", "wall_time")


class MetricsWriter:
    """Appends one row per generation to ``metrics.csv`` and TensorBoard scalars under ``tb/``."""

    def __init__(self, run_dir: str | pathlib.Path, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        run_dir = pathlib.Path(run_dir)
        self.path = run_dir / "metrics.csv"
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, row: Mapping[str, float]) -> None:
        """Record one generation (``row['generation']`` is the x-axis)."""
        if not self.enabled:
            return
        self._csv.writerow(row)
        step = int(row["generation"])
        for k, v in row.items():
            if k != "generation":
                self._tb.add_scalar(f"train/{k}", float(v), step)

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()


def read_csv(run_dir: str | pathlib.Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats."""
    with (pathlib.Path(run_dir) / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
