"""Parameters read from disk for training: a run directory's search mean, and where a search starts.

``strategy.init_mean`` is resolved here and only here (:func:`resolve_start`), for training, pycma_reference and
distillation alike: ``zeros`` and ``random`` (made by the policy), a flat parameter file (``.npz``),
``pretrained:NAME`` (a shipped agent), or a run directory / one of its checkpoints (``RUN_DIR/checkpoints/N``),
whose search-distribution mean it takes. The training core (:mod:`pinn_jax.training.trainer`) receives the
resulting parameter pytree and reads nothing itself.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax import artifacts
from pinn_jax.config import pretrained_name
from pinn_jax.errors import CheckpointError, ConfigError, ModelError, UserError, one_line
from pinn_jax.experiment import Experiment, setup
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training.es import make_strategy
from pinn_jax.training.trainer import abstract_state

__all__ = ["Start", "resolve_start", "reads_init_mean", "run_params"]

MADE_BY_POLICY = ("zeros", "random")  # init_mean values the policy makes; every other one names parameters to read


def reads_init_mean(init_mean: str) -> bool:
    """Whether ``strategy.init_mean`` names parameters to read (a file, a run, a shipped agent) rather than
    ``zeros`` or ``random``, which the policy makes."""
    return init_mean not in MADE_BY_POLICY


@dataclass(frozen=True)
class Start:
    """Where a search starts: ``mean`` (a parameter pytree), ``init_mean`` (the setting as the run records it: a run
    directory pinned to the checkpoint it was read from, ``RUN_DIR/checkpoints/N``) and ``flat`` (the parameters
    read, to keep beside the run as ``init_mean.npz``; None when the policy made them)."""

    mean: Any
    init_mean: str
    flat: np.ndarray | None = None


def resolve_start(init_mean: str, exp: Experiment, key: jax.Array) -> Start:
    """Resolve ``strategy.init_mean`` for the experiment ``exp``; ``key`` seeds ``random`` (the policy's own
    initialiser). Every source is read once. Raises a one-line :class:`ConfigError` naming ``strategy.init_mean``."""
    if init_mean == "zeros":
        return Start(exp.policy.search_start(exp.template), init_mean)
    if init_mean == "random":
        return Start(exp.policy.init(key, exp.obs_dim), init_mean)
    with _naming_init_mean():
        flat, pinned = _read_start(init_mean, exp.num_params)
    return Start(exp.unravel(jnp.asarray(flat)), pinned, flat)


def _read_start(spec: str, num_params: int) -> tuple[np.ndarray, str]:
    """The flat parameters ``spec`` names and ``spec`` pinned to its checkpoint when it is a run directory."""
    name, p = pretrained_name(spec), pathlib.Path(spec)
    if name is not None:
        return artifacts.load_flat(artifacts.shipped_file(name), num_params), spec
    if p.is_dir():
        flat, exp, source, generation = run_params(spec)
        if flat.size != num_params:
            raise ModelError(f"{source} holds {flat.size} parameters ({exp.cfg.policy.name}), "
                             f"this policy has {num_params}")
        run_dir, step = ckpt.resolve(spec)
        has_ckpt = (run_dir / artifacts.CHECKPOINTS_DIR).is_dir()
        pinned = spec if step is not None or not has_ckpt else str(run_dir / artifacts.CHECKPOINTS_DIR / str(generation))
        return flat, pinned
    if not spec.endswith(".npz"):
        raise ModelError(f"{spec} is neither a .npz file nor a run directory" if p.exists()
                         else f"not found: {spec} (a .npz file, a run directory or pretrained:NAME)")
    return artifacts.load_flat(spec, num_params), spec


@contextlib.contextmanager
def _naming_init_mean() -> Iterator[None]:
    """Re-raise a :class:`UserError` from reading ``strategy.init_mean`` as the one-line :class:`ConfigError`
    naming that key."""
    try:
        yield
    except UserError as e:
        raise ConfigError(f"config key 'strategy.init_mean': {one_line(e)}") from None


def run_params(spec: str | os.PathLike, which: str = "mean") -> tuple[np.ndarray, Experiment, str, int | None]:
    """``(flat parameters, the run's experiment, a description naming run and generation, the generation)`` of
    a run directory (its newest readable checkpoint) or ``RUN_DIR/checkpoints/N``. ``which``: the search distribution's
    ``mean``, its ``best`` member, or ``eval_best`` (the file the held-out evaluation keeps). A run directory
    without checkpoints falls back to its ``params.npz``. Raises a one-line :class:`UserError` (a missing or
    unreadable run directory, checkpoint or config). The generation is None for a ``params.npz`` that does
    not record it."""
    run_dir, step = ckpt.resolve(spec)
    cfg = ckpt.load_config(run_dir)
    exp = setup(cfg)
    has_ckpt = (pathlib.Path(run_dir) / artifacts.CHECKPOINTS_DIR).is_dir()
    params_file = pathlib.Path(run_dir) / artifacts.PARAMS_FILE
    if which == "eval_best" or (step is None and not has_ckpt and params_file.exists()):  # parameters saved as files
        if step is not None:
            raise CheckpointError(f"{spec}: eval_best parameters belong to the run directory, not to a checkpoint")
        flat, generation = artifacts.saved_params(run_dir, which)
        source = f"{run_dir} ({which}" + (f", generation {generation})" if generation is not None else ")")
    else:  # the search distribution in a checkpoint: its shapes come from the strategy, nothing is compiled
        strategy = make_strategy(cfg.strategy, exp.template)
        state, _ = ckpt.restore(run_dir, abstract_state(strategy, exp.template), step)
        flat = strategy.best(state.es_state)[0] if which == "best" else strategy.center(state.es_state)
        generation = int(state.generation)
        source = f"{run_dir} (generation {generation}, {which})"
    return np.asarray(flat, np.float32), exp, source, generation
