"""The training core: one generation (ask → evaluate population × rollouts → tell) as one
compiled call, and ``lax.scan`` over several generations between log points.

Everything here is pure and reads nothing from disk: the search starts from a parameter pytree its caller
gives (:func:`pinn_jax.training.runs.resolve_start` resolves ``strategy.init_mean``), and the host loop
(:mod:`pinn_jax.training.loop`) adds checkpoints, logs and progress.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from pinn_jax.config import Config
from pinn_jax.experiment import Experiment, setup
from pinn_jax.policies import Policy
from pinn_jax.rollout import evaluate_population, member_returns
from pinn_jax.training import distributed
from pinn_jax.training.es import Strategy, make_strategy

EVAL_STREAM = 0x65766C  # folded into the seed's key for the held-out episodes (never used for training keys)


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
    new state and per-generation metrics (arrays of length ``n``: the fitness statistics, ``best_so_far`` and
    ``nan_count``, as :func:`make_generation` names them).
    With a ``mesh`` the population is sharded over its devices and the state is kept replicated.
    """

    exp: Experiment
    strategy: Strategy
    run: Callable[[TrainState, int], tuple[TrainState, dict[str, jax.Array]]]
    mesh: Any = None  # jax.sharding.Mesh over all devices (axis "pop"), or None for one device

    cfg = property(lambda self: self.exp.cfg)
    policy = property(lambda self: self.exp.policy)
    env = property(lambda self: self.exp.env)
    env_params = property(lambda self: self.exp.env_params)
    obs_dim = property(lambda self: self.exp.obs_dim)
    template = property(lambda self: self.exp.template)

    def init(self, mean: Any = None, key: jax.Array | None = None) -> TrainState:
        """The state a search starts from: the distribution centred on ``mean`` (a parameter pytree, see
        :func:`pinn_jax.training.runs.resolve_start`; None: the policy's search start, zeros for the paper's
        policies), keys from ``cfg.seed`` (or an explicit key)."""
        key = jax.random.PRNGKey(self.cfg.seed) if key is None else key
        key, _, k_es = start_keys(key)  # the second key is resolve_start's, for init_mean: random
        mean = self.policy.search_start(self.template) if mean is None else mean
        evaluate = functools.partial(population_fitness, self.cfg, self.policy, self.exp.fitness_env, self.env_params)
        es_state = jax.jit(lambda k, m: self.strategy.init(k, m, evaluate))(k_es, mean)
        # Strong dtypes, so the state that comes out of a generation has the same type (no retrace).
        es_state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), es_state)
        state = TrainState(es_state=es_state, key=key, generation=jnp.int32(0))
        return state if self.mesh is None else distributed.put_replicated(state, self.mesh)

    @property
    def num_params(self) -> int:
        """Number of trainable parameters (the search dimension)."""
        return self.strategy.num_dims

    def unravel(self, flat: jax.Array) -> Any:
        """Flat parameter vector → parameter pytree (the experiment's layout)."""
        return self.exp.unravel(flat)

    def best_params(self, state: TrainState) -> Any:
        """Best member seen so far (as evaluated in its generation)."""
        return self.unravel(self.strategy.best(state.es_state)[0])

    def mean_params(self, state: TrainState) -> Any:
        """Centre of the search distribution (falls back to the best member)."""
        return self.unravel(self.mean_flat(state))

    def mean_flat(self, state: TrainState) -> jax.Array:
        """Flat centre of the search distribution (falls back to the best member)."""
        return self.strategy.center(state.es_state)


def abstract_state(strategy: Strategy, template: Any) -> TrainState:
    """The shapes and dtypes of a :class:`TrainState` for ``strategy`` (to restore a checkpoint into),
    computed without running anything."""
    def unscored(population: Any, key: jax.Array) -> jax.Array:  # shapes only: nothing is evaluated
        return jnp.zeros(jax.tree.leaves(population)[0].shape[:1], jnp.float32)

    es_state = jax.eval_shape(lambda k, m: strategy.init(k, m, unscored), jax.random.PRNGKey(0), template)
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    return TrainState(es_state=es_state, key=key, generation=jax.ShapeDtypeStruct((), jnp.int32))


def population_fitness(cfg: Config, policy: Policy, env: Any, env_params: Any, population: Any,
                       key: jax.Array) -> jax.Array:
    """Each member's fitness: its mean return over ``train.rollouts`` training episodes from ``key``."""
    tc = cfg.train
    return evaluate_population(policy, env, env_params, population, key, tc.rollouts, cfg.train_steps,
                               tc.common_random_numbers).mean(axis=1)


def make_generation(cfg: Config, policy: Policy, env: Any, env_params: Any, strategy: Strategy,
                    constrain: Callable[[Any], Any] = lambda x: x,
                    replicate: Callable[[Any], Any] = lambda x: x) -> Callable:
    """The pure generation step ``(state, _) -> (state, metrics)`` for use in ``lax.scan``.

    ``constrain`` is applied to the population before evaluation (e.g. a sharding constraint);
    ``replicate`` to the population as asked, the fitness and the new strategy state (e.g. a full
    copy on every device, so ask and tell are the same computation on any number of devices).
    """
    def generation(state: TrainState, _: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_ask, k_eval, k_tell = generation_keys(state.key)
        population, es_state = strategy.ask(k_ask, state.es_state)
        population = replicate(population)
        fitness = replicate(population_fitness(cfg, policy, env, env_params, constrain(population), k_eval))
        es_state = replicate(strategy.tell(k_tell, population, fitness, es_state))
        metrics = {**fitness_metrics(fitness, strategy.best(es_state)[1]), "nan_count": jnp.isnan(fitness).sum()}
        return TrainState(es_state=es_state, key=key, generation=state.generation + 1), metrics

    return generation


def fitness_metrics(fitness: Any, best_so_far: Any, xp: Any = jnp) -> dict[str, Any]:
    """The statistics of one generation's fitness that every trainer logs, by name (``metrics.csv``'s columns
    between ``generation`` and ``gens_per_sec``); ``xp`` is ``jax.numpy`` or ``numpy``. NaNs are left out."""
    return {"fitness_max": xp.nanmax(fitness), "fitness_mean": xp.nanmean(fitness), "fitness_min": xp.nanmin(fitness),
            "fitness_std": xp.nanstd(fitness), "best_so_far": best_so_far}


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


def make_trainer(exp: Experiment | Config, constrain: Callable[[Any], Any] = lambda x: x, mesh: Any = None) -> Trainer:
    """The compiled multi-generation ``run`` of an experiment (or of the one a config describes, built by
    :func:`pinn_jax.experiment.setup`).

    With a ``mesh`` (see :func:`pinn_jax.training.distributed.make_mesh`) the population is sharded over all
    its devices (``strategy.population_size`` must be a multiple of their number) and the state and
    metrics are replicated global arrays; ``init`` places the initial state accordingly.
    """
    exp = setup(exp) if isinstance(exp, Config) else exp
    cfg = exp.cfg
    strategy = make_strategy(cfg.strategy, exp.template)
    replicate = lambda x: x  # noqa: E731
    jit_kwargs: dict[str, Any] = {}
    if mesh is not None:
        distributed.check_population(cfg, mesh.size)
        user, shard = constrain, distributed.constrain(mesh)
        constrain, replicate = (lambda p: user(shard(p))), distributed.replicate(mesh)
        jit_kwargs["out_shardings"] = distributed.replicated(mesh)
    generation = make_generation(cfg, exp.policy, exp.fitness_env, exp.env_params, strategy, constrain, replicate)

    def run(state: TrainState, n: int) -> tuple[TrainState, dict[str, jax.Array]]:
        return jax.lax.scan(generation, state, None, length=n)

    return Trainer(exp=exp, strategy=strategy, run=jax.jit(run, static_argnums=1, **jit_kwargs), mesh=mesh)
