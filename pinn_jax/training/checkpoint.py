"""Orbax checkpoints of a run: the full :class:`~pinn_jax.training.trainer.TrainState` (strategy state,
PRNG key, generation) plus JSON metadata (config, parameter count, best fitness).

Layout: ``RUN_DIR/checkpoints/<generation>/{state,meta}`` beside the run's other files
(:mod:`pinn_jax.artifacts`).

Failures are one line each (:class:`~pinn_jax.errors.CheckpointError`), never orbax's or TensorStore's
tracebacks: a save that cannot be written (disk full, read-only, ...) names the last checkpoint that is on
disk and removes its own incomplete files; a restore walks back from the newest checkpoint to the newest
readable one, saying which it skipped and why (with ``set_aside``, as a resume does, the unreadable ones
are moved to ``checkpoints/<generation>.unreadable`` — kept for inspection, out of orbax's way, so the run
can write that generation again). A checkpoint only counts once orbax has committed it on disk
(:func:`committed_steps`), never while it is being written.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import pathlib
import re
import shutil
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import CheckpointError, one_line

# Config keys that may differ between a checkpoint and the run resuming it.
RESUMABLE_KEYS = {"train.generations", "train.log_every", "train.checkpoint_every", "train.eval_every",
                  "train.eval_episodes", "run_dir", "distributed"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def incompatible_keys(saved: Config, current: Config) -> list[str]:
    """Config keys whose values differ in a way that makes resuming impossible or inexact."""
    a, b = _flatten(saved.to_dict()), _flatten(current.to_dict())
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS))


def manager(run_dir: str | pathlib.Path, max_to_keep: int | None = 3, create: bool = True,
            keep_every: int = 0) -> ocp.CheckpointManager:
    """An orbax manager for ``RUN_DIR/checkpoints``: it keeps the newest ``max_to_keep`` checkpoints and, with
    ``keep_every`` k > 0, every one whose step is a multiple of k.

    A writing manager (``create``) first removes the temporary directories of saves that never finished
    (a process killed while saving), so a step can be written again; a reading one touches nothing.
    """
    path = pathlib.Path(run_dir).absolute() / artifacts.CHECKPOINTS_DIR
    # Synchronous saves (save() waits for the commit anyway): orbax then creates a step's directory before its
    # writer threads start, so one that cannot be created fails at once; asynchronously, the writers would wait
    # five minutes for it and then log tracebacks.
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, keep_period=keep_every or None, create=create,
                                        cleanup_tmp_directories=create, enable_async_checkpointing=False)
    with _quiet():  # e.g. warnings about a step whose deletion a killed process left half done
        return ocp.CheckpointManager(path, options=opts, item_names=("state", "meta"))


def committed_steps(mngr: ocp.CheckpointManager) -> list[int]:
    """The steps whose checkpoints are committed on disk, read from the directory now (orbax's own list
    also holds a step whose save has started but not finished)."""
    with _quiet():
        mngr.reload()
    return sorted(mngr.all_steps())


def latest_committed(mngr: ocp.CheckpointManager) -> int | None:
    """The newest step committed on disk, or None."""
    return max(committed_steps(mngr), default=None)


def save(mngr: ocp.CheckpointManager, state: Any, meta: dict[str, Any]) -> None:
    """Save ``state`` at its generation number, blocking until it is committed on disk.

    Nothing happens when that step is already on disk. A save that fails for lack of space, permission or
    another storage error raises a one-line :class:`CheckpointError` naming the last checkpoint on disk;
    the incomplete files of the failed step are removed and earlier checkpoints are left as they are.
    """
    step = int(jax.device_get(state.generation))
    if step in committed_steps(mngr):
        return
    try:
        with _quiet():
            mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except Exception as e:
        why = _storage_failure(e)
        if why is None:
            raise
        _remove_incomplete(pathlib.Path(mngr.directory), step)
        last = latest_committed(mngr)
        run_dir = pathlib.Path(mngr.directory).parent
        kept = (f"last good checkpoint: generation {last} (continue with --resume {run_dir} once it can be written)"
                if last is not None else "no checkpoint has been saved")
        raise CheckpointError(f"could not write checkpoint {step} in {mngr.directory}: {why}; {kept}") from None


def close(mngr: ocp.CheckpointManager | None) -> None:
    """Close a manager (None: nothing to close)."""
    if mngr is not None:
        with _quiet():
            mngr.close()


# Messages of storage failures (OSError strerror, TensorStore status texts) that make a save a user problem.
_STORAGE_PHRASES = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied",
                    "Input/output error", "File too large", "Stale file handle", "Too many open files")
_STORAGE_STATUS = re.compile(r"\b(RESOURCE_EXHAUSTED|PERMISSION_DENIED|DATA_LOSS|UNAVAILABLE|ABORTED)\b")


def _storage_failure(e: BaseException) -> str | None:
    """A short reason when ``e`` (or its cause) is a storage failure, else None (a programming error)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return e.strerror.lower() if e.strerror else one_line(e)
        text = str(e)
        for phrase in _STORAGE_PHRASES:
            if phrase in text:
                return phrase.lower()
        m = _STORAGE_STATUS.search(text)
        if m:
            return _short(text)
        e = e.__cause__ or e.__context__
    return None


def _short(text: str, limit: int = 200) -> str:
    """The first line of an error message, with TensorStore's chains of context ("OUT_OF_RANGE: Error opening
    ...: Error reading ...: <what went wrong>") cut to the status and what went wrong, at most ``limit`` long."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first.split(" [tensorstore_spec", 1)[0].strip()
    m = re.match(r"([A-Z][A-Z_]+): (.*)", first)
    if m and ": " in m.group(2):
        first = f"{m.group(1)}: {m.group(2).rsplit(': ', 1)[1]}"
    return first if len(first) <= limit else first[:limit - 1] + "…"


def _remove_incomplete(ckpt_dir: pathlib.Path, step: int) -> None:
    """Remove the temporary directories a failed save of ``step`` left (never a committed checkpoint)."""
    if not ckpt_dir.is_dir():
        return
    for p in ckpt_dir.iterdir():
        if p.name.startswith(f"{step}.orbax-checkpoint-tmp"):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _quiet(join_timeout: float = 60.0) -> Iterator[None]:
    """Run an orbax operation with nothing of orbax's on stderr: its failure is raised, for a one-line report.

    Orbax logs through absl, muted here. After a failure, the threads the operation started are waited for
    (up to ``join_timeout`` seconds), so that they neither log later nor write into files the caller removes,
    and what it abandoned is collected at once (:func:`_collect_leftovers`)."""
    if not isinstance(sys.unraisablehook, _DropClosedLoopErrors):
        sys.unraisablehook = _DropClosedLoopErrors(sys.unraisablehook)
    absl = logging.getLogger("absl")
    level, before = absl.level, set(threading.enumerate())
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    except Exception as e:
        deadline = time.monotonic() + join_timeout
        for t in set(threading.enumerate()) - before:
            with contextlib.suppress(Exception):  # orbax's threads raise their own failure again on join
                t.join(max(0.0, deadline - time.monotonic()))
        _collect_leftovers(e)
        raise
    finally:
        absl.setLevel(level)


def _collect_leftovers(failure: BaseException) -> None:
    """Collect the tasks, futures and coroutines that a failed orbax operation abandoned (the frames of
    ``failure`` and of the exceptions chained to it hold them) now, with asyncio's log and warnings off, not
    whenever the garbage collector meets them (at exit, after the one-line error): asyncio would log
    "exception was never retrieved" and warn "coroutine ... was never awaited"."""
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    asyncio_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e, seen = failure, set()
            while e is not None and id(e) not in seen:
                seen.add(id(e))
                traceback.clear_frames(e.__traceback__)
                e = e.__cause__ or e.__context__
            gc.collect()
    finally:
        asyncio_log.setLevel(level)


class _DropClosedLoopErrors:
    """``sys.unraisablehook`` that drops TensorStore's "Event loop is closed" errors and passes on the rest.

    When one read or write of an orbax operation fails, orbax closes the operation's event loop while others
    are still under way in TensorStore's threads; each of those, finishing any time later, calls back into the
    closed loop and reports the error here, with no object."""

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    def __call__(self, u: Any) -> None:
        if not (u.object is None and isinstance(u.exc_value, RuntimeError)
                and str(u.exc_value) == "Event loop is closed"):
            self.previous(u)


def resolve(path: str | pathlib.Path) -> tuple[pathlib.Path, int | None]:
    """``RUN_DIR`` or ``RUN_DIR/checkpoints/<step>`` → (run dir, step or None for latest)."""
    p = pathlib.Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint or run directory not found: {p}")
    if p.name.isdigit() and p.parent.name == artifacts.CHECKPOINTS_DIR:
        return p.parent.parent, int(p.name)
    if p.name == artifacts.CHECKPOINTS_DIR:
        return p.parent, None
    return p, None


def load_config(run_dir: str | pathlib.Path) -> Config:
    """The config saved with a run."""
    f = artifacts.config_file(run_dir)
    if not f.exists():  # a directory in its place is read, and refused, as a config
        raise CheckpointError(f"{run_dir} is not a pinn_jax run directory (no config.yaml)")
    return config_lib.read(f)


def restore(run_dir: str | pathlib.Path, abstract_state: Any, step: int | None = None,
            set_aside: bool = False) -> tuple[Any, dict]:
    """Restore the state at ``step`` shaped like ``abstract_state``, and its metadata.

    With ``step=None``, the newest readable checkpoint: an unreadable newer one (corrupt or missing files) is
    skipped with one line on stderr naming it, the reason and the checkpoint used instead; with
    ``set_aside`` (a resume, holding the run directory's lock) it is also moved to
    ``checkpoints/<step>.unreadable``. A checkpoint saved for another config (different shapes) is a
    :class:`CheckpointError` at once, as is an unreadable ``step`` asked for by number, or no readable
    checkpoint at all.
    """
    run_dir = pathlib.Path(run_dir)
    mngr = manager(run_dir, create=False)
    try:
        steps = sorted(mngr.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"no checkpoints in {run_dir / artifacts.CHECKPOINTS_DIR}")
        if step is not None and step not in steps:
            raise CheckpointError(f"no checkpoint at generation {step} in {run_dir} (have {sorted(steps)})")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        unreadable: list[tuple[int, str]] = []
        for s in [step] if step is not None else steps:
            try:
                with _quiet():
                    out = mngr.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                  meta=ocp.args.JsonRestore()))
                break
            except Exception as e:  # noqa: BLE001 - corrupt files surface as any exception type
                mismatch = _mismatch(pathlib.Path(mngr.directory) / str(s) / "state", abstract)
                if mismatch:
                    raise CheckpointError(f"checkpoint {run_dir} (generation {s}) does not match this config: "
                                          f"{mismatch}") from None
                unreadable.append((s, _short(one_line(e))))
        else:
            s, why = unreadable[0]
            if step is not None:
                raise CheckpointError(f"checkpoint {s} in {run_dir / artifacts.CHECKPOINTS_DIR} is unreadable: {why}")
            raise CheckpointError(f"no readable checkpoint in {run_dir / artifacts.CHECKPOINTS_DIR} (tried "
                                  f"{', '.join(str(u) for u, _ in unreadable)}; newest, {s}: {why})")
    finally:
        close(mngr)
    for bad, why in unreadable:
        note = ""
        if set_aside:
            note = f"; moved it to {_set_aside(run_dir, bad)}"
        print(f"warning: checkpoint {bad} in {run_dir / artifacts.CHECKPOINTS_DIR} is unreadable ({why}); falling back to "
              f"checkpoint {s}{note}", file=sys.stderr, flush=True)
    return out.state, out.meta


def _set_aside(run_dir: pathlib.Path, step: int) -> pathlib.Path:
    """Move an unreadable checkpoint to ``checkpoints/<step>.unreadable[-k]``, a name orbax ignores."""
    src = run_dir / artifacts.CHECKPOINTS_DIR / str(step)
    dest = src.with_name(f"{step}.unreadable")
    k = 1
    while dest.exists():
        k += 1
        dest = src.with_name(f"{step}.unreadable-{k}")
    src.rename(dest)
    return dest


def _leaves_by_name(tree: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{"es_state.mean": (shape, dtype), ...}`` for a pytree of arrays or of orbax array metadata."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            continue
        name = ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        out[name] = (tuple(shape), getattr(leaf, "dtype", None))
    return out


def _mismatch(state_dir: pathlib.Path, abstract: Any) -> str | None:
    """How the checkpoint in ``state_dir`` differs from ``abstract`` in structure or shapes; None when it does
    not, or when its metadata cannot be read (then it is unreadable, not mismatched)."""
    handler = ocp.StandardCheckpointHandler()
    try:
        with _quiet():
            saved = _leaves_by_name(handler.metadata(state_dir))
    except Exception:  # noqa: BLE001 - unreadable metadata
        return None
    finally:
        with contextlib.suppress(Exception):
            handler.close()
    if not saved:
        return None
    wanted = _leaves_by_name(abstract)
    extra, missing = sorted(saved.keys() - wanted.keys()), sorted(wanted.keys() - saved.keys())
    if extra or missing:
        parts = ([f"only in the checkpoint: {', '.join(extra[:3])}"] if extra else []) + (
            [f"only in this config: {', '.join(missing[:3])}"] if missing else [])
        return "; ".join(parts)
    for name in sorted(wanted):
        (s_shape, s_dtype), (w_shape, w_dtype) = saved[name], wanted[name]
        if s_shape != w_shape:
            return f"{name} has shape {s_shape} in the checkpoint, {w_shape} here"
        if s_dtype is not None and w_dtype is not None and np.dtype(s_dtype) != np.dtype(w_dtype):
            return f"{name} has dtype {np.dtype(s_dtype)} in the checkpoint, {np.dtype(w_dtype)} here"
    return None


def to_numpy(tree: Any) -> Any:
    """Host copy of a pytree as numpy arrays."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
