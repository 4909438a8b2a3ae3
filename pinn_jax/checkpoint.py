"""Orbax checkpoints of a run: the full :class:`~pinn_jax.trainer.TrainState` (strategy state,
PRNG key, generation) plus JSON metadata (config, parameter count, best fitness).

Layout: ``RUN_DIR/config.yaml``, ``RUN_DIR/checkpoints/<generation>/{state,meta}``; the flat parameters
a finished run leaves are in ``RUN_DIR/params.npz`` (``mean``, ``best``) and ``RUN_DIR/eval_best.npz``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import yaml

from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import CheckpointError

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


def manager(run_dir: str | pathlib.Path, max_to_keep: int | None = 3, create: bool = True) -> ocp.CheckpointManager:
    """An orbax manager for ``RUN_DIR/checkpoints``."""
    path = pathlib.Path(run_dir).absolute() / "checkpoints"
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(path, options=opts, item_names=("state", "meta"))


def save(mngr: ocp.CheckpointManager, state: Any, meta: dict[str, Any]) -> None:
    """Save ``state`` at its generation number (blocking until written)."""
    step = int(jax.device_get(state.generation))
    if step in mngr.all_steps():
        return
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()


def resolve(path: str | pathlib.Path) -> tuple[pathlib.Path, int | None]:
    """``RUN_DIR`` or ``RUN_DIR/checkpoints/<step>`` → (run dir, step or None for latest)."""
    p = pathlib.Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint or run directory not found: {p}")
    if p.name.isdigit() and p.parent.name == "checkpoints":
        return p.parent.parent, int(p.name)
    if p.name == "checkpoints":
        return p.parent, None
    return p, None


def load_config(run_dir: str | pathlib.Path) -> Config:
    """The config saved with a run."""
    f = pathlib.Path(run_dir) / "config.yaml"
    if not f.is_file():
        raise CheckpointError(f"{run_dir} is not a pinn_jax run directory (no config.yaml)")
    return config_lib.from_dict(yaml.safe_load(f.read_text()))


def restore(run_dir: str | pathlib.Path, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restore the state at ``step`` (latest when None) shaped like ``abstract_state``, and its metadata."""
    mngr = manager(run_dir, create=False)
    steps = mngr.all_steps()
    if not steps:
        raise CheckpointError(f"no checkpoints in {pathlib.Path(run_dir) / 'checkpoints'}")
    step = max(steps) if step is None else step
    if step not in steps:
        raise CheckpointError(f"no checkpoint at generation {step} in {run_dir} (have {sorted(steps)})")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:
        out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                          meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {run_dir} (generation {step}) does not match this config: {first}") from None
    return out.state, out.meta


PARAM_CHOICES = ("mean", "best", "eval_best")


def saved_params(run_dir: str | pathlib.Path, which: str) -> tuple[np.ndarray, int | None]:
    """Flat parameters a run left on disk and their generation (None when not recorded).

    ``which``: ``mean`` / ``best`` from ``params.npz`` (written when a run finishes), or
    ``eval_best``, the distribution mean that scored best on the held-out episodes
    (``eval_best.npz``, written during training when ``train.eval_every`` is set).
    """
    if which not in PARAM_CHOICES:
        raise CheckpointError(f"params must be one of {', '.join(PARAM_CHOICES)}, got {which!r}")
    run_dir = pathlib.Path(run_dir)
    path = run_dir / ("eval_best.npz" if which == "eval_best" else "params.npz")
    if not path.is_file():
        hint = "train it with train.eval_every > 0" if which == "eval_best" else "the run has not finished"
        raise CheckpointError(f"no {path.name} in {run_dir} ({hint})")
    with np.load(path) as data:
        flat = np.asarray(data["params" if which == "eval_best" else which], np.float32)
        generation = int(data["generation"]) if "generation" in data else None
    return flat, generation


def to_numpy(tree: Any) -> Any:
    """Host copy of a pytree as numpy arrays."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
