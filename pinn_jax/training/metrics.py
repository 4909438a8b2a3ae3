"""Per-generation metrics: CSV files and TensorBoard event files in the run directory.

``metrics.csv`` (TensorBoard tag prefix ``train/``) has one row per generation; ``eval.csv``
(prefix ``eval/``) one row per held-out evaluation of the distribution mean, and exists only for runs
that evaluate (``train.eval_every > 0``). The generations between two log points run as one compiled call, so
``gens_per_sec`` is that chunk's rate (its generations over its wall time, the first chunk's with compilation),
the same on each of the chunk's rows.
At the end of a run its config goes to TensorBoard's HPARAMS tab with
its final scores (:meth:`MetricsWriter.hparams`).
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from tensorboardX import SummaryWriter

from pinn_jax import artifacts
from pinn_jax.errors import RunDirError, one_line

# metrics.csv: generation, the names of training.trainer.fitness_metrics (tests/test_train.py keeps them equal), speed
COLUMNS = ("generation", "fitness_max", "fitness_mean", "fitness_min", "fitness_std", "best_so_far",
           "gens_per_sec", "wall_time")
EVAL_COLUMNS = ("generation", "return_mean", "return_std", "return_median", "return_min", "return_max",
                "wall_time")
_TABLES = {"train": (artifacts.METRICS_FILE, COLUMNS), "eval": (artifacts.EVAL_FILE, EVAL_COLUMNS)}


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config mapping as TensorBoard hparams: ``section.key`` names, lists as text, None left out."""
    out: dict[str, bool | int | float | str] = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_hparams(v, f"{name}."))
        elif v is not None:
            out[name] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def eval_row(generation: int, returns: np.ndarray, wall_time: float) -> dict[str, float]:
    """The ``eval.csv`` row of one held-out evaluation (returns of the episodes)."""
    r = np.asarray(returns)
    return {"generation": generation, "return_mean": float(r.mean()), "return_std": float(r.std()),
            "return_median": float(np.median(r)), "return_min": float(r.min()), "return_max": float(r.max()),
            "wall_time": wall_time}


class MetricsWriter:
    """Appends rows to ``metrics.csv`` / ``eval.csv`` and the same values as TensorBoard scalars under ``tb/``.

    Only the ``tables`` given are written: pass ``("train", "eval")`` for a run that evaluates; ``eval.csv``
    is not created otherwise.
    With ``resume_from`` (the generation a resumed run restarts at), rows logged after that
    generation by an interrupted earlier call are dropped first, so each generation appears once
    (in every table on disk, written this time or not).
    """

    def __init__(self, run_dir: str | pathlib.Path, enabled: bool = True, resume_from: int | None = None,
                 tables: tuple[str, ...] = ("train",)):
        self.enabled = enabled
        if not enabled:
            return
        unknown = set(tables) - _TABLES.keys()
        if unknown:
            raise ValueError(f"unknown metrics tables {sorted(unknown)}; known: {sorted(_TABLES)}")
        run_dir = pathlib.Path(run_dir)
        self._files, self._csv = {}, {}
        for table, (name, columns) in _TABLES.items():
            path = run_dir / name
            if resume_from is not None and path.exists():
                _truncate_after(path, resume_from)
            if table not in tables:
                continue
            new = not path.exists()
            self._files[table] = path.open("a", newline="")
            self._csv[table] = csv.DictWriter(self._files[table], fieldnames=columns, extrasaction="ignore")
            if new:
                self._csv[table].writeheader()
        self._tb = SummaryWriter(str(run_dir / artifacts.TB_DIR))

    def write(self, row: Mapping[str, float], table: str = "train") -> None:
        """Record one row of ``table`` (``"train"`` or ``"eval"``; ``row['generation']`` is the x-axis)."""
        if not self.enabled:
            return
        if table not in self._csv:
            raise ValueError(f"metrics table {table!r} was not opened (tables: {', '.join(self._csv)})")
        self._csv[table].writerow(row)
        step = int(row["generation"])
        for k, v in row.items():
            if k != "generation":
                self._tb.add_scalar(f"{table}/{k}", float(v), step)

    def scalars(self, values: Mapping[str, float], step: int, table: str = "train") -> None:
        """TensorBoard-only scalars (e.g. the strategy's step size), not part of the CSV tables; a NaN (the step size
        of a strategy without one, such as PSO) is left out."""
        if self.enabled:
            for k, v in values.items():
                if not np.isnan(v):
                    self._tb.add_scalar(f"{table}/{k}", float(v), int(step))

    def hparams(self, config: Mapping[str, Any], scores: Mapping[str, float], step: int) -> None:
        """The run's ``config`` (nested, see :func:`flat_hparams`) as TensorBoard hparams with its final ``scores``
        (shown as ``hparam/NAME``), in ``tb/hparams``."""
        if self.enabled:
            self._tb.add_hparams(flat_hparams(config), {f"hparam/{k}": float(v) for k, v in scores.items()},
                                 name="hparams", global_step=int(step))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A TensorBoard text entry (e.g. the resolved config)."""
        if self.enabled:
            self._tb.add_text(tag, text, step)

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
    """Keep the rows up to ``generation`` (not a last row cut short by a kill), replacing the file at once."""
    header, rows = _rows(path, torn_tail=True)
    with artifacts.atomic(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows([header, *(r for r in rows if float(r[0]) <= generation)])


def _rows(path: pathlib.Path, torn_tail: bool = False,
          columns: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a metrics table, every value checked to be a finite number and a ``generation``
    column to rise row by row (with ``torn_tail``, a last row without its line end, a process killed while
    appending it, is left out). The header must name ``columns`` (and a known table's own). A
    :class:`~pinn_jax.errors.RunDirError` names the file, the line and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.reader(io.StringIO(text, newline=""))
        lines = [(reader.line_num, r) for r in reader if r]
    except (UnicodeDecodeError, csv.Error) as e:
        raise RunDirError(f"{path} is not a readable CSV table ({type(e).__name__}: {one_line(e)})") from None
    except OSError as e:  # e.g. a directory in its place
        raise RunDirError(f"{path} cannot be read ({e.strerror or type(e).__name__})") from None
    if not lines:
        return [], []
    (_, header), body = lines[0], lines[1:]
    if torn_tail and body and not text.endswith("\n"):
        body = body[:-1]
    expected = [*next((cols for name, cols in _TABLES.values() if name == path.name), ()), *columns]
    missing = [c for c in expected if c not in header]
    if missing:
        raise RunDirError(f"{path} has no column {', '.join(missing)} in its header line")
    previous = None
    for line, r in body:
        if len(r) != len(header):
            raise RunDirError(f"{path} line {line} has {len(r)} values, its header {len(header)}")
        bad = next((v for v in r if not _is_number(v)), None)
        if bad is not None:
            raise RunDirError(f"{path} line {line}: {bad!r} is not a number")
        bad = next((v for v in r if not math.isfinite(float(v))), None)
        if bad is not None:
            raise RunDirError(f"{path} line {line}: {bad!r} is not a finite number")
        if "generation" in header:
            generation = float(r[header.index("generation")])
            if previous is not None and generation <= previous:
                raise RunDirError(f"{path} line {line}: generation {generation:g} after {previous:g} (rows out of "
                                  f"order or repeated)")
            previous = generation
    return header, [r for _, r in body]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(run_dir: str | pathlib.Path, name: str = artifacts.METRICS_FILE,
             columns: Sequence[str] = ()) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` (or ``eval.csv``, or another table such as ``distill.csv``, whose header
    must name ``columns``) as floats; none when the file does not exist. A value that is not a finite number, a row
    with too few or too many values, generations out of order or a directory in the file's place is a one-line
    :class:`~pinn_jax.errors.RunDirError` naming the file (and the line)."""
    path = pathlib.Path(run_dir) / name
    if not path.exists():
        return []
    header, rows = _rows(path, columns=columns)
    return [{k: float(v) for k, v in zip(header, r)} for r in rows]
