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

Every file the package writes goes through :func:`atomic` (or :func:`write_text`): a temporary file beside it,
flushed to disk, then moved over it, so after a failure or a kill at any moment a file is the old one or the new
one, never a torn one; a write that fails (a full disk) is one :class:`~pinn_jax.errors.WriteError` line naming the
file. Logs that grow row by row (``metrics.csv``, ``eval.csv``) are only ever appended to. A command checks its
outputs with :func:`output_dir` / :func:`output_file` before any work, and replaces none unless told (``--force``).
Every reader here distrusts what it reads: a missing, torn, empty or hand-edited file is one
:class:`~pinn_jax.errors.UserError` line naming the file and what is wrong.

Numpy and paths only: nothing here builds a policy or touches JAX.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import zipfile
import zlib
from typing import Any, Iterator, Sequence

import numpy as np
import yaml

from pinn_jax.errors import CheckpointError, ModelError, UserError, WriteError, one_line

__all__ = ["CONFIG_FILE", "OVERRIDES_FILE", "append_overrides",
           "PARAMS_FILE", "EVAL_BEST_FILE", "INIT_MEAN_FILE", "STUDENT_FILE", "DISTILL_LOG",
           "ROUNDS_DIR", "CHECKPOINTS_DIR", "METRICS_FILE", "EVAL_FILE", "TB_DIR", "PYCMA_LOG", "REPORT_JSON",
           "REPORT_CSV", "RETURNS_BOX_PNG", "RETURNS_VS_NOISE_PNG", "RETURNS_VS_PERIOD_PNG", "EVALUATE_FILES",
           "STUDY_JSON", "STUDY_MD", "STUDY_PNG", "STUDY_FILES", "DIAGNOSE_JSON", "BENCH_JSON", "BENCH_MD",
           "BENCH_PNG", "BENCH_FILES", "BENCH_VISION_JSON", "BENCH_VISION_MD", "BENCH_VISION_FILES", "PARAM_CHOICES",
           "atomic", "write_text", "config_file", "write_config", "save_flat", "load_flat", "save_run_params",
           "save_eval_best", "read_npz", "eval_best_kept", "saved_params", "round_file", "student_file",
           "pycma_mean_file", "output_dir", "output_file", "SHIPPED_DIR", "agent_files", "shipped_names",
           "shipped_file", "shipped_meta_file", "append_overrides", "RETURNS_VS_OCCLUSION_PNG"]

CONFIG_FILE = "config.yaml"
PARAMS_FILE = "params.npz"  # a finished run: flat "mean" and "best"
EVAL_BEST_FILE = "eval_best.npz"  # the mean that scored best on held-out episodes: "params", "generation",
# "return_mean" and "episodes" (how many held-out episodes)
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
RETURNS_VS_OCCLUSION_PNG = "returns_vs_occlusion.png"
EVALUATE_FILES = (REPORT_JSON, REPORT_CSV, RETURNS_BOX_PNG, RETURNS_VS_NOISE_PNG, RETURNS_VS_PERIOD_PNG,
                  RETURNS_VS_OCCLUSION_PNG)
STUDY_JSON, STUDY_MD, STUDY_PNG = "study.json", "study.md", "study.png"  # study: reports, table, figure
STUDY_FILES = (STUDY_JSON, STUDY_MD, STUDY_PNG)
DIAGNOSE_JSON = "diagnose.json"
BENCH_JSON, BENCH_MD, BENCH_PNG = "bench.json", "bench.md", "bench_scaling.png"  # bench: report, tables, figure
BENCH_FILES = (BENCH_JSON, BENCH_MD, BENCH_PNG)
BENCH_VISION_JSON, BENCH_VISION_MD = "bench_vision.json", "bench_vision.md"  # bench --vision: report, tables
BENCH_VISION_FILES = (BENCH_VISION_JSON, BENCH_VISION_MD)
SHIPPED_DIR = pathlib.Path(__file__).resolve().parent / "models" / "pretrained"  # NAME.npz + NAME.json
PARAM_CHOICES = ("mean", "best", "eval_best")  # which parameters of a run

Path = str | os.PathLike


_TMP_STEM, _TMP_SUFFIX = 32, 16  # at most this much of a name's stem and suffix in its temporary file's name


def _temp_beside(path: pathlib.Path) -> pathlib.Path:
    """A new empty file in ``path``'s directory, ``.STEM.XXXXXXXX.tmpSUFFIX``: the suffix kept (writers choose the
    format by it), the stem cut short so that the name fits wherever ``path``'s own name does."""
    suffix = path.suffix if len(path.suffix) <= _TMP_SUFFIX else ""
    while True:
        tmp = path.with_name(f".{path.stem[:_TMP_STEM]}.{secrets.token_hex(4)}.tmp{suffix}")
        try:  # O_EXCL: never someone else's file; mode 0o666 less the umask, as open() would give
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _write_error(path: pathlib.Path, e: OSError) -> WriteError:
    return WriteError(e.errno, e.strerror or one_line(e), str(path))


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[pathlib.Path]:
    """Write ``path`` at once: yields a new empty temporary file in the same directory (same suffix, for writers
    that choose the format by it) for the block to write; when the block is done, the file is flushed to disk
    (fsync) and moved over ``path`` (``os.replace``). If the block or the move fails, the temporary file is
    removed and ``path`` is left as it was; an :class:`OSError` (a full disk, a quota, an I/O error) is then a
    :class:`~pinn_jax.errors.WriteError`, one line naming ``path`` and the reason."""
    path = pathlib.Path(path)
    try:
        tmp = _temp_beside(path)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _write_error(path, e) from e
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk (not every file system can sync a directory)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: Path, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic`."""
    path = pathlib.Path(path)
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def config_file(directory: Path) -> pathlib.Path:
    """The ``config.yaml`` of a run or distillation directory."""
    return pathlib.Path(directory) / CONFIG_FILE


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
    return _save_npz(path, params=np.asarray(flat, np.float32), **extra)


def _save_npz(path: Path, **arrays: Any) -> pathlib.Path:
    path = pathlib.Path(path)
    with atomic(path) as tmp, tmp.open("wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **arrays)
    return path


def load_flat(path: Path, num_params: int | None = None) -> np.ndarray:
    """The flat parameters of a file: its ``params`` array, else ``mean`` (a run's ``params.npz``).

    Raises :class:`~pinn_jax.errors.ModelError` (one line naming the file) when it is missing, unreadable,
    has neither key, or holds another number of values than ``num_params``.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ModelError(f"parameter file not found: {path}")
    data = read_npz(path)
    key = next((k for k in ("params", "mean") if k in data), None)
    if key is None:
        raise ModelError(f"{path} has no 'params' or 'mean' array (found {', '.join(data) or 'nothing'})")
    flat = _flat(data[key], path, key, ModelError)
    if num_params is not None and flat.size != num_params:
        raise ModelError(f"{path} holds {flat.size} parameters, this policy has {num_params}")
    return flat


def read_npz(path: Path, error: type[UserError] = ModelError) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full (a torn file fails here, not later); ``error`` (one line
    naming the file) when it is a directory, empty, torn, not an ``.npz`` or holds pickled objects."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise error(f"{path} is a directory, not an .npz file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise error(f"{path} holds one bare array (.npy), not an .npz file of named arrays")
        with data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if path.is_file() and path.stat().st_size == 0:
            raise error(f"{path} is empty (0 bytes), not an .npz file") from None
        raise error(f"{path} is not a readable .npz file (torn or not one: {type(e).__name__}: "
                    f"{one_line(e)})") from None


def _flat(value: np.ndarray, path: pathlib.Path, key: str, error: type[UserError]) -> np.ndarray:
    """A stored flat parameter vector as float32; ``error`` when it is not a 1-D array of finite real numbers."""
    if value.ndim != 1:
        raise error(f"{path} holds an array '{key}' of shape {value.shape}, not a flat parameter vector")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise error(f"{path}: '{key}' holds {value.dtype} values, not numbers")
    flat = value.astype(np.float32)
    if not np.isfinite(flat).all():
        raise error(f"{path}: '{key}' holds {int((~np.isfinite(flat)).sum())} values that are not finite (nan or inf)")
    return flat


def _scalar(data: dict[str, np.ndarray], key: str, path: pathlib.Path, kind: type) -> float | int:
    """``data[key]`` as one finite ``kind`` (float or int); a :class:`CheckpointError` naming the file otherwise."""
    if key not in data:
        raise CheckpointError(f"{path} has no '{key}' entry (found {', '.join(data) or 'nothing'})")
    v = data[key]
    numeric = np.issubdtype(v.dtype, np.integer) or (kind is float and np.issubdtype(v.dtype, np.floating))
    if v.shape != () or not numeric or not np.isfinite(v):
        raise CheckpointError(f"{path}: '{key}' must be one finite {'number' if kind is float else 'integer'}, "
                              f"got {v.dtype} of shape {v.shape}")
    return kind(v)


def save_run_params(run_dir: Path, best: Any, mean: Any) -> pathlib.Path:
    """A finished run's flat ``best`` member and distribution ``mean`` (``params.npz``)."""
    return _save_npz(pathlib.Path(run_dir) / PARAMS_FILE, best=np.asarray(best, np.float32),
                     mean=np.asarray(mean, np.float32))


def save_eval_best(run_dir: Path, flat: Any, generation: int, return_mean: float, episodes: int) -> pathlib.Path:
    """The distribution mean that scored best on the held-out episodes so far (``eval_best.npz``), with its score
    and the number of held-out episodes behind it."""
    return save_flat(pathlib.Path(run_dir) / EVAL_BEST_FILE, flat, generation=generation, return_mean=return_mean,
                     episodes=episodes)


def eval_best_kept(run_dir: Path) -> tuple[float, int | None] | None:
    """``(held-out score, number of held-out episodes)`` kept in a run's ``eval_best.npz`` (the number is None in
    files written before it was recorded), or None when there is no file; a :class:`CheckpointError` naming the
    file when it is unreadable or holds no finite ``return_mean``."""
    path = pathlib.Path(run_dir) / EVAL_BEST_FILE
    if not path.exists():
        return None
    data = read_npz(path, CheckpointError)
    episodes = _scalar(data, "episodes", path, int) if "episodes" in data else None
    return _scalar(data, "return_mean", path, float), episodes


def saved_params(run_dir: Path, which: str) -> tuple[np.ndarray, int | None]:
    """Flat parameters a run left on disk and their generation (None when not recorded).

    ``which``: ``mean`` / ``best`` from ``params.npz`` (written when a run finishes), or ``eval_best``
    (written during training when ``train.eval_every`` is set).
    """
    if which not in PARAM_CHOICES:
        raise CheckpointError(f"params must be one of {', '.join(PARAM_CHOICES)}, got {which!r}")
    run_dir = pathlib.Path(run_dir)
    path = run_dir / (EVAL_BEST_FILE if which == "eval_best" else PARAMS_FILE)
    if not path.exists():
        hint = "train it with train.eval_every > 0" if which == "eval_best" else "the run has not finished"
        raise CheckpointError(f"no {path.name} in {run_dir} ({hint})")
    data = read_npz(path, CheckpointError)
    key = "params" if which == "eval_best" else which
    if key not in data:
        raise CheckpointError(f"{path} has no '{key}' array (found {', '.join(data) or 'nothing'})")
    generation = _scalar(data, "generation", path, int) if "generation" in data else None
    return _flat(data[key], path, key, CheckpointError), generation


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


def _valid_name(path: Path, flag: str, what: str) -> pathlib.Path:
    """``path`` as a Path; one line when it is empty, not valid UTF-8 (undecodable bytes of a command line,
    which the reports, the logs and the console could not spell) or cannot even be looked up (too long)."""
    if not str(path).strip():  # pathlib reads '' as '.'
        raise UserError(f"{flag} must name a {what}, got {str(path)!r}")
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise UserError(f"{flag} {shown} is not a valid UTF-8 name; choose another") from None
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:  # ENAMETOOLONG, ELOOP, ...: which pathlib's exists() and is_dir() would raise
        raise UserError(f"{flag} {path}: {e.strerror or type(e).__name__}") from None
    return pathlib.Path(path)


def output_dir(path: Path, flag: str, replaces: Sequence[str] = (), force: bool = False,
               empty: bool = False) -> pathlib.Path:
    """Create an output directory before any work is done, or say in one line why it cannot be used: a bad
    name, not a directory, not writable (a file as long as any this package writes cannot be made there), or
    already holding one of the files ``replaces`` names (unless ``force``) or anything at all (``empty``)."""
    path = _valid_name(path, flag, "directory")
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a directory")
    if path.is_dir():
        there = [name for name in replaces if (path / name).exists()]
        if there and not force:
            raise UserError(f"{flag} {path} already holds {', '.join(there)}: add --force to replace "
                            f"{'it' if len(there) == 1 else 'them'}")
        if empty and any(path.iterdir()):
            raise UserError(f"{flag} {path} already exists and is not empty: give a new directory for this run")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create it ({e.strerror or type(e).__name__})") from None
    try:  # a real write, since root passes os.access everywhere (even in /proc), of the longest temporary name
        _temp_beside(path / f"{'x' * _TMP_STEM}.{'x' * (_TMP_SUFFIX - 1)}").unlink()
    except OSError as e:
        raise UserError(f"{flag} {path} is not writable ({e.strerror or type(e).__name__})") from None
    return path


def output_file(path: Path, flag: str, force: bool = False) -> pathlib.Path:
    """Check (and create the directory of) an output file before any work is done; one line when it cannot
    be written, or already exists (unless ``force``)."""
    path = _valid_name(path, flag, "file")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory, not a file")
    output_dir(path.parent, f"{flag} {path}: its directory")
    existed = path.exists()
    if existed and not force:
        raise UserError(f"{flag} {path} already exists: add --force to replace it")
    try:  # open it as the writer will; leave no empty file behind
        path.open("ab").close()
    except OSError as e:
        raise UserError(f"{flag} {path} cannot be written ({e.strerror or type(e).__name__})") from None
    if not existed:
        path.unlink()
    return path
