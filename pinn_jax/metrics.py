"""Per-generation metrics: CSV files and TensorBoard event files in the run directory.

``metrics.csv`` (TensorBoard tag prefix ``train/``) has one row per generation; ``eval.csv``
(prefix ``eval/``) one row per held-out evaluation of the distribution mean.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Mapping

from tensorboardX import SummaryWriter

COLUMNS = ("generation", "fitness_max", "fitness_mean", "fitness_min", "fitness_std", "best_so_far",
           "gens_per_sec", "wall_time")
EVAL_COLUMNS = ("generation", "return_mean", "return_std", "return_median", "return_min", "return_max",
                "wall_time")
_TABLES = {"train": ("metrics.csv", COLUMNS), "eval": ("eval.csv", EVAL_COLUMNS)}


class MetricsWriter:
    """Appends rows to ``metrics.csv`` / ``eval.csv`` and the same values as TensorBoard scalars under ``tb/``.

    With ``resume_from`` (the generation a resumed run restarts at), rows logged after that
    generation by an interrupted earlier call are dropped first, so each generation appears once.
    """

    def __init__(self, run_dir: str | pathlib.Path, enabled: bool = True, resume_from: int | None = None):
        self.enabled = enabled
        if not enabled:
            return
        run_dir = pathlib.Path(run_dir)
        self._files, self._csv = {}, {}
        for table, (name, columns) in _TABLES.items():
            path = run_dir / name
            if resume_from is not None and path.exists():
                _truncate_after(path, resume_from)
            new = not path.exists()
            self._files[table] = path.open("a", newline="")
            self._csv[table] = csv.DictWriter(self._files[table], fieldnames=columns, extrasaction="ignore")
            if new:
                self._csv[table].writeheader()
        self._tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, row: Mapping[str, float], table: str = "train") -> None:
        """Record one row of ``table`` (``"train"`` or ``"eval"``; ``row['generation']`` is the x-axis)."""
        if not self.enabled:
            return
        self._csv[table].writerow(row)
        step = int(row["generation"])
        for k, v in row.items():
            if k != "generation":
                self._tb.add_scalar(f"{table}/{k}", float(v), step)

    def flush(self) -> None:
        if self.enabled:
            for f in self._files.values():
                f.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            for f in self._files.values():
                f.close()
            self._tb.close()


def _truncate_after(path: pathlib.Path, generation: int) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and float(r[0]) <= generation]
    if len(keep) != len(rows):
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(keep)


def read_csv(run_dir: str | pathlib.Path, name: str = "metrics.csv") -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` (or ``eval.csv``) as floats; none when the file does not exist."""
    path = pathlib.Path(run_dir) / name
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
