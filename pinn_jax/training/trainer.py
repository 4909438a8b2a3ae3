"""The training core: one generation (ask → evaluate population × rollouts → tell) as one
compiled call, and ``lax.scan`` over several generations between log points.

Everything here is pure; the CLI in :mod:`pinn_jax.train` adds checkpoints, logs and progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from flax import struct

from pinn_jax import artifacts

from pinn_jax.training import distributed

from pinn_jax.models import pretrained
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.config import Config, pretrained_name
from pinn_jax.errors import CheckpointError, ConfigError, ModelError, UserError, one_line
from pinn_jax.training.es import Strategy, make_strategy
from pinn_jax.experiment import Experiment, setup
from pinn_jax.policies import Policy
from pinn_jax.rollout import evaluate_population, member_returns

EVAL_STREAM = 0x65766C  # folded into the seed's key for the held-out episodes (never used for training keys)
METRIC_NAMES = ("fitness_max", "fitness_mean", "fitness_min", "fitness_std", "best_so_far", "nan_count")


@struct.dataclass
class TrainState:
    """Everything that determines the rest of a run: strategy state, PRNG key, generation."""

    es_state: Any
    key: jax.Array  # raw uint32 PRNG key data
    generation: jax.Array  # int32 scalar


@dataclass(frozen=True, eq=False)
class Trainer:
    """A configured experiment (:class:`~pinn_jax.experiment.Experiment`), its strategy and the compiled
    generation loop.

    ``run(state, n)`` advances ``n`` generations in one jit-compiled ``lax.scan`` and returns the
    new state and per-generation metrics (arrays of length ``n``, see ``METRIC_NAMES``).
    ``traces`` counts how often the generation body was traced (compilation guard in tests).
    With a ``mesh`` the population is sharded over its devices and the state is kept replicated.
    """

    exp: Experiment
    strategy: Strategy
    run: Callable[[TrainState, int], tuple[TrainState, dict[str, jax.Array]]]
    traces: list
    mesh: Any = None  # jax.sharding.Mesh over all devices (axis "pop"), or None for one device

    cfg = property(lambda self: self.exp.cfg)
    policy = property(lambda self: self.exp.policy)
    env = property(lambda self: self.exp.env)
    env_params = property(lambda self: self.exp.env_params)
    obs_dim = property(lambda self: self.exp.obs_dim)
    template = property(lambda self: self.exp.template)

    def init(self, key: jax.Array | None = None, warm_start: bool = True) -> TrainState:
        """Initial state from ``cfg.seed`` (or an explicit key). ``warm_start=False`` leaves
        ``strategy.init_mean`` unread (the search starts from zeros): a target to restore a checkpoint into,
        so that a resumed stage never needs the run it started from."""
        key = jax.random.PRNGKey(self.cfg.seed) if key is None else key
        state = _init_state(self, key, warm_start)
        return state if self.mesh is None else distributed.put_replicated(state, self.mesh)

    @property
    def num_params(self) -> int:
        """Number of trainable parameters (the search dimension)."""
        return self.strategy.num_dims

    def unravel(self, flat: jax.Array) -> Any:
        """Flat parameter vector → parameter pytree."""
        return self.strategy.unravel(flat)

    def best_params(self, state: TrainState) -> Any:
        """Best member seen so far (as evaluated in its generation)."""
        return self.unravel(self.strategy.best(state.es_state)[0])

    def mean_params(self, state: TrainState) -> Any:
        """Centre of the search distribution (falls back to the best member)."""
        return self.unravel(self.mean_flat(state))

    def mean_flat(self, state: TrainState) -> jax.Array:
        """Flat centre of the search distribution (falls back to the best member)."""
        return self.strategy.center(state.es_state)


def initial_mean_flat(path: str | os.PathLike, num_params: int) -> np.ndarray:
    """Flat parameters to start the search from (warm start / fine-tuning, a stage of staged ES): any flat
    parameter file (:func:`pinn_jax.artifacts.load_flat`), ``pretrained:NAME`` (a shipped agent), or a run
    directory / one of its checkpoints (``RUN_DIR/checkpoints/N``), whose search-distribution mean it takes
    (:func:`run_params`; an interrupted run included). Raises :class:`ConfigError` naming ``strategy.init_mean``."""
    with _naming_init_mean():
        key, p = pretrained_name(path), pathlib.Path(path)
        if key is not None:
            path = pretrained.params_file(key)
        elif p.is_dir():
            flat, exp, source, _ = run_params(path)
            if flat.size != num_params:
                raise ModelError(f"{source} holds {flat.size} parameters ({exp.cfg.policy.name}), "
                                 f"this policy has {num_params}")
            return flat
        elif not str(path).endswith(".npz"):
            raise ModelError(f"{path} is neither a .npz file nor a run directory" if p.exists()
                             else f"not found: {path} (a .npz file, a run directory or pretrained:NAME)")
        return artifacts.load_flat(path, num_params)


def reads_init_mean(init_mean: str) -> bool:
    """Whether ``strategy.init_mean`` names parameters to read (a file, a run, a shipped agent) rather than
    ``zeros`` or ``random``, which the policy makes."""
    return init_mean not in ("zeros", "random")


@contextlib.contextmanager
def _naming_init_mean() -> Iterator[None]:
    """Re-raise a :class:`UserError` from reading ``strategy.init_mean`` as the one-line :class:`ConfigError`
    naming that key."""
    try:
        yield
    except UserError as e:
        raise ConfigError(f"config key 'strategy.init_mean': {one_line(e)}") from None


def pin_init_mean(cfg: Config) -> Config:
    """``cfg`` with a run directory in ``strategy.init_mean`` replaced by ``RUN_DIR/checkpoints/N``, the
    checkpoint it starts from now (the newest readable one), so that a stage's ``config.yaml`` names its exact
    start. Anything else is returned as it is (and checked when the search starts)."""
    init = cfg.strategy.init_mean
    if not reads_init_mean(init) or pretrained_name(init) is not None or not pathlib.Path(init).is_dir():
        return cfg
    run_dir, step = ckpt.resolve(init)
    if step is not None or not (run_dir / artifacts.CHECKPOINTS_DIR).is_dir():
        return cfg
    with _naming_init_mean():
        generation = run_params(run_dir)[3]
    pinned = str(run_dir / artifacts.CHECKPOINTS_DIR / str(generation))
    return dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, init_mean=pinned))


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
    if which == "eval_best" or (step is None and not has_ckpt and params_file.is_file()):  # parameters saved as files
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


def abstract_state(strategy: Strategy, template: Any) -> TrainState:
    """The shapes and dtypes of a :class:`TrainState` for ``strategy`` (to restore a checkpoint into),
    computed without running anything."""
    es_state = jax.eval_shape(strategy.init, jax.random.PRNGKey(0), template)
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    return TrainState(es_state=es_state, key=key, generation=jax.ShapeDtypeStruct((), jnp.int32))


def _init_state(tr: Trainer, key: jax.Array, warm_start: bool = True) -> TrainState:
    key, k_mean, k_es = start_keys(key)
    init = tr.cfg.strategy.init_mean if warm_start else "zeros"
    if init == "random":
        mean = tr.policy.init(k_mean, tr.obs_dim)
    elif init == "zeros":
        mean = tr.policy.search_start(tr.template)
    else:
        mean = tr.unravel(jnp.asarray(initial_mean_flat(init, tr.num_params)))
    es_state = jax.jit(tr.strategy.init)(k_es, mean)
    # Strong dtypes, so the state that comes out of a generation has the same type (no retrace).
    es_state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), es_state)
    return TrainState(es_state=es_state, key=key, generation=jnp.int32(0))


def make_generation(cfg: Config, policy: Policy, env: Any, env_params: Any, strategy: Strategy,
                    constrain: Callable[[Any], Any] = lambda x: x,
                    replicate: Callable[[Any], Any] = lambda x: x) -> Callable:
    """The pure generation step ``(state, _) -> (state, metrics)`` for use in ``lax.scan``.

    ``constrain`` is applied to the population before evaluation (e.g. a sharding constraint);
    ``replicate`` to the population as asked, the fitness and the new strategy state (e.g. a full
    copy on every device, so ask and tell are the same computation on any number of devices).
    """
    tc = cfg.train

    def generation(state: TrainState, _: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_ask, k_eval, k_tell = generation_keys(state.key)
        population, es_state = strategy.ask(k_ask, state.es_state)
        population = replicate(population)
        returns = evaluate_population(policy, env, env_params, constrain(population), k_eval, tc.rollouts,
                                      cfg.train_steps, tc.common_random_numbers)
        fitness = replicate(returns.mean(axis=1))
        es_state = replicate(strategy.tell(k_tell, population, fitness, es_state))
        metrics = {
            "fitness_max": jnp.nanmax(fitness), "fitness_mean": jnp.nanmean(fitness),
            "fitness_min": jnp.nanmin(fitness), "fitness_std": jnp.nanstd(fitness),
            "best_so_far": strategy.best(es_state)[1], "nan_count": jnp.isnan(fitness).sum(),
        }
        return TrainState(es_state=es_state, key=key, generation=state.generation + 1), metrics

    return generation


def start_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A run's keys from its seed's key: (the run key generation 1 splits, the initial mean's, the strategy
    init's)."""
    key, k_mean, k_es = jax.random.split(key, 3)
    return key, k_mean, k_es


def generation_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One generation's keys from the run's key: (next run key, ask, episodes, tell); the first run key is
    :func:`start_keys`'."""
    key, k_ask, k_eval, k_tell = jax.random.split(key, 4)
    return key, k_ask, k_eval, k_tell


def held_out_keys(seed: int, episodes: int) -> jax.Array:
    """Fixed episode keys for evaluation during training, disjoint from the training keys' stream."""
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_STREAM), episodes)


def make_evaluator(tr: Trainer | Experiment, episodes: int) -> Callable[[jax.Array], jax.Array]:
    """Jitted ``flat params -> returns (episodes,)`` on fixed held-out episodes of the training env.

    Same environment and observation transform as training, whole episodes of the task
    (``env.max_steps``, even when ``train.episode_steps`` cuts training episodes short), the
    episodes fixed by ``cfg.seed``, so successive evaluations of a run are paired comparisons.
    """
    keys = held_out_keys(tr.cfg.seed, episodes)

    def run(flat: jax.Array) -> jax.Array:
        return member_returns(tr.policy, tr.env, tr.env_params, tr.unravel(flat), keys, tr.cfg.env.max_steps)

    return jax.jit(run)


def limit_lapack_threads(n: int = 1) -> list[str]:
    """Run the host BLAS/LAPACK that XLA:CPU calls for CMA-ES's ``eigh`` on ``n`` threads.

    OpenBLAS's worker threads spin-wait; sharing the cores with XLA's own thread pool (or with
    other processes) made one 913x913 ``eigh`` take up to 7 s instead of 0.06 s on a 2-core
    machine. Uses threadpoolctl; nothing is changed when ``OPENBLAS_NUM_THREADS`` is set, or when JAX runs on
    an accelerator (its ``eigh`` does not use the host's LAPACK there). Returns the file names of the
    libraries limited.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ or jax.default_backend() != "cpu":
        return []
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that jaxlib's LAPACK kernels use)

    threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    return [os.path.basename(i["filepath"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def make_trainer(cfg: Config, constrain: Callable[[Any], Any] = lambda x: x, mesh: Any = None) -> Trainer:
    """Build the experiment described by ``cfg`` with its compiled multi-generation ``run``.

    With a ``mesh`` (see :func:`pinn_jax.training.distributed.make_mesh`) the population is sharded over all
    its devices (``strategy.population_size`` must be a multiple of their number) and the state and
    metrics are replicated global arrays; ``init`` places the initial state accordingly.
    """
    limit_lapack_threads()
    exp = setup(cfg)
    strategy = make_strategy(cfg.strategy, exp.template)
    replicate = lambda x: x  # noqa: E731
    jit_kwargs: dict[str, Any] = {}
    if mesh is not None:
        distributed.check_population(cfg, mesh.size)
        user, shard = constrain, distributed.constrain(mesh)
        constrain, replicate = (lambda p: user(shard(p))), distributed.replicate(mesh)
        jit_kwargs["out_shardings"] = distributed.replicated(mesh)
    generation = make_generation(cfg, exp.policy, exp.env, exp.fitness_params, strategy, constrain, replicate)
    traces: list = []

    def run(state: TrainState, n: int) -> tuple[TrainState, dict[str, jax.Array]]:
        traces.append(n)
        return jax.lax.scan(generation, state, None, length=n)

    return Trainer(exp=exp, strategy=strategy, run=jax.jit(run, static_argnums=1, **jit_kwargs), traces=traces,
                   mesh=mesh)
