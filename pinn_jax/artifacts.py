"""Every file a run, a distillation, a shipped agent or a command's ``--out`` leaves on disk: names, layouts
and npz keys.

* A *flat parameter file* is an ``.npz`` whose ``params`` array is one flat float32 parameter vector in
  the layout of :func:`pinn_jax.experiment.setup` (``eval_best.npz``, ``student.npz``,
  ``rounds/NNN.npz``, ``pinn_jax/models/pretrained/NAME.npz``); a finished run's ``params.npz`` holds two,
  ``mean`` and ``best``. :func:`load_flat` reads any of them.
* A run directory holds ``config.yaml`` (the settings it runs with now; after a resume that changed some, also
  ``overrides.yaml``, their history), ``checkpoints/`` (orbax, :mod:`pinn_jax.training.checkpoint`),
  ``metrics.csv`` / ``eval.csv`` / ``tb/`` (:mod:`pinn_jax.training.metrics`), ``params.npz`` and ``eval_best.npz``;
  a pycma reference run also ``pycma.csv`` and ``mean_NNNNNN.npz``.
* A distillation directory holds ``config.yaml``, ``distill.csv``, ``student.npz`` and ``rounds/NNN.npz``.
* A shipped agent is ``NAME.npz`` beside ``NAME.json`` (its metadata) in :data:`SHIPPED_DIR`.
* ``evaluate``, ``study``, ``diagnose`` and ``bench`` write the reports and figures named below into ``--out``.

Numpy and paths only: nothing here builds a policy or touches JAX.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

import numpy as np
import yaml

from pinn_jax.errors import CheckpointError, ModelError, UserError

__all__ = ["CONFIG_FILE", "OVERRIDES_FILE", "append_overrides",
           "PARAMS_FILE", "EVAL_BEST_FILE", "INIT_MEAN_FILE", "STUDENT_FILE", "DISTILL_LOG",
           "ROUNDS_DIR", "CHECKPOINTS_DIR", "METRICS_FILE", "EVAL_FILE", "TB_DIR", "PYCMA_LOG", "REPORT_JSON",
           "REPORT_CSV", "RETURNS_BOX_PNG", "RETURNS_VS_NOISE_PNG", "RETURNS_VS_PERIOD_PNG", "STUDY_JSON",
           "STUDY_MD", "STUDY_PNG", "DIAGNOSE_JSON", "BENCH_JSON", "BENCH_MD", "BENCH_PNG", "PARAM_CHOICES",
           "config_file", "write_text", "write_config", "save_flat", "load_flat", "save_run_params", "save_eval_best",
           "eval_best_score", "saved_params", "round_file", "student_file", "pycma_mean_file", "output_dir",
           "output_file", "SHIPPED_DIR", "agent_files", "shipped_names", "shipped_file", "shipped_meta_file"]

CONFIG_FILE = "config.yaml"
PARAMS_FILE = "params.npz"  # a finished run: flat "mean" and "best"
EVAL_BEST_FILE = "eval_best.npz"  # the mean that scored best on held-out episodes: "params", "generation", "return_mean"
OVERRIDES_FILE = "overrides.yaml"  # a resumed run's changed settings: a list of {generation, set: [KEY=VALUE, ...]}
INIT_MEAN_FILE = "init_mean.npz"  # a warm-started run's first search mean: "params", "source" (its init_mean)
STUDENT_FILE = "student.npz"
DISTILL_LOG = "distill.csv"
ROUNDS_DIR = "rounds"  # a distillation's student after each round, NNN.npz
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"  # a run's fitness, one row per generation
EVAL_FILE = "eval.csv"  # a run's held-out scores of the search mean, one row per evaluation (train.eval_every)
TB_DIR = "tb"  # a run's TensorBoard event files
PYCMA_LOG = "pycma.csv"  # a pycma reference run's step size and timings, one row per generation
# what the commands write into their --out directory
REPORT_JSON = "report.json"  # evaluate: the whole report, with every episode's return
REPORT_CSV = "report.csv"  # evaluate: the statistics, one row per model and condition
RETURNS_BOX_PNG = "returns_box.png"  # evaluate's figures
RETURNS_VS_NOISE_PNG = "returns_vs_noise.png"
RETURNS_VS_PERIOD_PNG = "returns_vs_shuffle_period.png"
STUDY_JSON, STUDY_MD, STUDY_PNG = "study.json", "study.md", "study.png"  # study: reports, table, figure
DIAGNOSE_JSON = "diagnose.json"
BENCH_JSON, BENCH_MD, BENCH_PNG = "bench.json", "bench.md", "bench_scaling.png"  # bench: report, tables, figure
SHIPPED_DIR = pathlib.Path(__file__).resolve().parent / "models" / "pretrained"  # NAME.npz + NAME.json
PARAM_CHOICES = ("mean", "best", "eval_best")  # which parameters of a run

Path = str | os.PathLike


def config_file(directory: Path) -> pathlib.Path:
    """The ``config.yaml`` of a run or distillation directory."""
    return pathlib.Path(directory) / CONFIG_FILE


def write_text(path: Path, text: str) -> pathlib.Path:
    """Write a text file atomically: a temporary file beside it, then ``os.replace`` (no half-written file)."""
    path = pathlib.Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
    return path


def write_config(directory: Path, cfg_dict: dict[str, Any]) -> pathlib.Path:
    """Write a config (as ``Config.to_dict()``) to the directory's ``config.yaml``."""
    return write_text(config_file(directory), yaml.safe_dump(cfg_dict, sort_keys=False))


def append_overrides(directory: Path, generation: int, changes: list[str]) -> pathlib.Path:
    """Add one entry to the run directory's ``overrides.yaml``: the settings a resume at ``generation`` changed."""
    path = pathlib.Path(directory) / OVERRIDES_FILE
    history = yaml.safe_load(path.read_text()) if path.is_file() else []
    history.append({"generation": generation, "set": changes})
    return write_text(path, yaml.safe_dump(history, sort_keys=False, allow_unicode=True))


def save_flat(path: Path, flat: Any, **extra: Any) -> pathlib.Path:
    """Write a flat parameter file (``params`` plus any scalar ``extra`` entries)."""
    path = pathlib.Path(path)
    np.savez(path, params=np.asarray(flat, np.float32), **extra)
    return path


def load_flat(path: Path, num_params: int | None = None) -> np.ndarray:
    """The flat parameters of a file: its ``params`` array, else ``mean`` (a run's ``params.npz``).

    Raises :class:`~pinn_jax.errors.ModelError` (one line naming the file) when it is missing, unreadable,
    has neither key, or holds another number of values than ``num_params``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelError(f"parameter file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in ("params", "mean") if k in data.files), None)
            if key is None:
                raise ModelError(f"{path} has no 'params' or 'mean' array (found {', '.join(data.files) or 'nothing'})")
            flat = np.asarray(data[key], np.float32)
    except (OSError, ValueError) as e:  # not an npz / corrupt zip
        raise ModelError(f"{path} is not a readable .npz file ({type(e).__name__})") from None
    if flat.ndim != 1:
        raise ModelError(f"{path} holds an array of shape {flat.shape}, not a flat parameter vector")
    if num_params is not None and flat.size != num_params:
        raise ModelError(f"{path} holds {flat.size} parameters, this policy has {num_params}")
    return flat


def save_run_params(run_dir: Path, best: Any, mean: Any) -> pathlib.Path:
    """A finished run's flat ``best`` member and distribution ``mean`` (``params.npz``)."""
    path = pathlib.Path(run_dir) / PARAMS_FILE
    np.savez(path, best=np.asarray(best, np.float32), mean=np.asarray(mean, np.float32))
    return path


def save_eval_best(run_dir: Path, flat: Any, generation: int, return_mean: float) -> pathlib.Path:
    """The distribution mean that scored best on the held-out episodes so far (``eval_best.npz``)."""
    return save_flat(pathlib.Path(run_dir) / EVAL_BEST_FILE, flat, generation=generation, return_mean=return_mean)


def eval_best_score(run_dir: Path) -> float | None:
    """The held-out score kept in a run's ``eval_best.npz``, or None when there is none."""
    path = pathlib.Path(run_dir) / EVAL_BEST_FILE
    if not path.is_file():
        return None
    with np.load(path) as kept:
        return float(kept["return_mean"])


def saved_params(run_dir: Path, which: str) -> tuple[np.ndarray, int | None]:
    """Flat parameters a run left on disk and their generation (None when not recorded).

    ``which``: ``mean`` / ``best`` from ``params.npz`` (written when a run finishes), or ``eval_best``
    (written during training when ``train.eval_every`` is set).
    """
    if which not in PARAM_CHOICES:
        raise CheckpointError(f"params must be one of {', '.join(PARAM_CHOICES)}, got {which!r}")
    run_dir = pathlib.Path(run_dir)
    path = run_dir / (EVAL_BEST_FILE if which == "eval_best" else PARAMS_FILE)
    if not path.is_file():
        hint = "train it with train.eval_every > 0" if which == "eval_best" else "the run has not finished"
        raise CheckpointError(f"no {path.name} in {run_dir} ({hint})")
    with np.load(path) as data:
        flat = np.asarray(data["params" if which == "eval_best" else which], np.float32)
        generation = int(data["generation"]) if "generation" in data else None
    return flat, generation


def agent_files(directory: Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """Agent ``name``'s flat parameter file ``NAME.npz`` and its metadata ``NAME.json`` in ``directory``."""
    directory = pathlib.Path(directory)
    return directory / f"{name}.npz", directory / f"{name}.json"


def shipped_names() -> list[str]:
    """Names of the agents shipped in the package (a ``NAME.npz`` with its ``NAME.json``)."""
    return sorted(name for name in {p.stem for p in SHIPPED_DIR.iterdir()}
                  if all(f.is_file() for f in agent_files(SHIPPED_DIR, name)))


def _shipped(name: str) -> tuple[pathlib.Path, pathlib.Path]:
    if name not in shipped_names():
        raise ModelError(f"no pretrained model {name!r} (available: {', '.join(shipped_names()) or 'none'})")
    return agent_files(SHIPPED_DIR, name)


def shipped_file(name: str) -> pathlib.Path:
    """A shipped agent's parameter file; a one-line :class:`~pinn_jax.errors.ModelError` naming the shipped
    agents when there is no agent ``name``."""
    return _shipped(name)[0]


def shipped_meta_file(name: str) -> pathlib.Path:
    """A shipped agent's metadata file (as :func:`shipped_file`)."""
    return _shipped(name)[1]


def student_file(out: Path) -> pathlib.Path:
    """A distillation's latest student."""
    return pathlib.Path(out) / STUDENT_FILE


def round_file(out: Path, round_: int) -> pathlib.Path:
    """Where a distillation in ``out`` keeps the student of round ``round_``."""
    return pathlib.Path(out) / ROUNDS_DIR / f"{round_:03d}.npz"


def pycma_mean_file(out: Path, generation: int) -> pathlib.Path:
    """Where a pycma reference run in ``out`` keeps its search mean of ``generation``."""
    return pathlib.Path(out) / f"mean_{generation:06d}.npz"


def output_dir(path: Path, flag: str) -> pathlib.Path:
    """Create an output directory before any work is done, or say in one line why it cannot be used."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create it ({e.strerror or type(e).__name__})") from None
    try:  # a real write, since root passes os.access everywhere (even in /proc)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise UserError(f"{flag} {path} is not writable ({e.strerror or type(e).__name__})") from None
    return path


def output_file(path: Path, flag: str) -> pathlib.Path:
    """Check (and create the directory of) an output file before any work is done; one line when it cannot
    be written."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory, not a file")
    output_dir(path.parent, f"{flag} {path}: its directory")
    existed = path.exists()
    try:  # open it as the writer will; leave no empty file behind
        path.open("ab").close()
    except OSError as e:
        raise UserError(f"{flag} {path} cannot be written ({e.strerror or type(e).__name__})") from None
    if not existed:
        path.unlink()
    return path
