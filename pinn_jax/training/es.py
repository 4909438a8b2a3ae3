"""The one place that talks to evosax (pinned to 0.3.x, whose API differs from 0.1/0.2).

evosax *minimises*; this module's :class:`Strategy` speaks in fitness to *maximise* (returns) and
negates on the way in, so callers never see the sign convention.

Every algorithm evosax 0.3.2 exports runs, on the flat parameter vector, except those in :data:`UNSUPPORTED`.
Population-based algorithms (genetic algorithms, PSO, differential and diffusion evolution) start from an
evaluated population: ``strategy.init_mean`` plus ``sigma_init`` times Gaussian noise.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as _ALGORITHMS
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.core.optimizer import clipup
from jax.flatten_util import ravel_pytree

from pinn_jax.config import ConfigError, StrategyConfig

UNSUPPORTED = {  # evosax algorithms a pinn_jax run (one search, one fitness per member) cannot drive, and why
    "GuidedES": "it needs a surrogate gradient every generation",
    "RandomSearch": "it samples from a distribution of its own (a sampling_fn), not around strategy.init_mean",
    "SV_CMA_ES": "it keeps several search distributions (num_populations), a pinn_jax run one",
    "SV_Open_ES": "it keeps several search distributions (num_populations), a pinn_jax run one",
}

# Gradient-based ES whose evosax default optimizer steps 1e-3 to 1e-2 per generation whatever the search's std:
# from zeros they barely move in tens of generations. Without strategy.optimizer they get Adam at this many sigma_init.
SMALL_STEP_DEFAULTS = ("ARS", "ASEBO", "ESMC", "NoiseReuseES", "Open_ES", "PersistentES", "PGPE")
ADAM_STEP_PER_SIGMA = 0.2

Evaluate = Callable[[Any, jax.Array], jax.Array]  # (population pytree, key) -> fitness to maximise per member


def available() -> list[str]:
    """Names of the evosax algorithms that can be chosen in ``strategy.name``."""
    return sorted(set(_ALGORITHMS) - set(UNSUPPORTED))


def _lookup(name: str) -> str:
    """evosax's name of the algorithm ``strategy.name`` names (any case, ``-`` for ``_``)."""
    by_lower = {k.lower(): k for k in _ALGORITHMS}
    found = by_lower.get(name.lower().replace("-", "_"))
    if found in UNSUPPORTED:
        raise ConfigError(f"config key 'strategy.name' {name!r} is not supported: {UNSUPPORTED[found]} "
                          f"(all supported: {', '.join(available())})")
    if found is None:
        raise ConfigError(f"config key 'strategy.name' {name!r} is not an evosax algorithm "
                          f"(e.g. CMA_ES, Sep_CMA_ES, PGPE, Open_ES, SNES; all supported: {', '.join(available())})")
    return found


@dataclass(frozen=True, eq=False)
class Strategy:
    """An evosax algorithm bound to its hyper-parameters; maximises fitness.

    ``state`` is the evosax state pytree; ``params`` are the evosax hyper-parameters (a pytree);
    ``sigma_init`` the spread of a population-based algorithm's first population around the mean.
    """

    algo: Any
    params: Any
    sigma_init: float

    @property
    def num_dims(self) -> int:
        return int(self.algo.num_dims)

    def init(self, key: jax.Array, mean: Any, evaluate: Evaluate) -> Any:
        """Initial state with the search centred on the ``mean`` pytree. A population-based algorithm starts
        from ``mean`` plus ``sigma_init`` times Gaussian noise, its members scored by ``evaluate``."""
        if not isinstance(self.algo, PopulationBasedAlgorithm):
            return self.algo.init(key, mean, self.params)
        k_pop, k_eval, k_init = jax.random.split(key, 3)
        # evosax's own initial state says how many members it keeps (fewer than population_size for LGA)
        size = jax.eval_shape(self.algo._init, k_init, self.params).population.shape[0]
        flat, unravel = ravel_pytree(mean)
        noise = jax.random.normal(k_pop, (size, flat.size), flat.dtype)
        population = jax.vmap(unravel)(flat + self.sigma_init * noise)
        return self.algo.init(k_init, population, -evaluate(population, k_eval), self.params)

    def ask(self, key: jax.Array, state: Any) -> tuple[Any, Any]:
        """Propose a population (a pytree with a leading population axis)."""
        return self.algo.ask(key, state, self.params)

    def tell(self, key: jax.Array, population: Any, fitness: jax.Array, state: Any) -> Any:
        """Update the state from fitness to maximise (one value per member)."""
        state, _ = self.algo.tell(key, population, -fitness, state, self.params)
        return state

    def best(self, state: Any) -> tuple[jax.Array, jax.Array]:
        """Best flat solution seen so far and its fitness (to maximise)."""
        return state.best_solution, -state.best_fitness

    def mean(self, state: Any) -> jax.Array | None:
        """Flat mean of the search distribution (None for population-based algorithms)."""
        return getattr(state, "mean", None)

    def center(self, state: Any) -> jax.Array:
        """The flat centre of the search: the distribution mean, or the best solution for algorithms
        without one."""
        mean = self.mean(state)
        return self.best(state)[0] if mean is None else mean

    def step_size(self, state: Any) -> jax.Array:
        """The search's step size: the mean of its ``std`` (sigma for CMA-ES), NaN for algorithms without one."""
        std = getattr(state, "std", None)
        return jnp.float32(jnp.nan) if std is None else jnp.mean(jnp.asarray(std, jnp.float32))


def _optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """An optax optimizer by name (``adam``, ``sgd``, ...) or evosax's ``clipup`` (max speed 2 × lr)."""
    if name.lower() == "clipup":
        return clipup(learning_rate=learning_rate, max_velocity=2 * learning_rate)
    make = getattr(optax, name, None)
    if not callable(make) or "learning_rate" not in inspect.signature(make).parameters:
        raise ConfigError(f"config key 'strategy.optimizer' {name!r} is not an optax optimizer "
                          f"(e.g. adam, sgd, adamw) or clipup")
    return make(learning_rate=learning_rate)


def make_strategy(cfg: StrategyConfig, solution: Any) -> Strategy:
    """Build the configured evosax algorithm for parameter pytrees shaped like ``solution``.

    ``cfg.sigma_init`` sets the initial search std where the algorithm has one (``std_init``
    hyper-parameter, or a ``std_schedule`` constructor argument as in Open_ES). ``cfg.optimizer``
    (with ``cfg.learning_rate``) replaces the gradient optimizer of algorithms that take one; without it
    those in :data:`SMALL_STEP_DEFAULTS` use Adam at ``ADAM_STEP_PER_SIGMA * cfg.sigma_init``.
    """
    name = _lookup(cfg.name)
    cls = _ALGORITHMS[name]
    kwargs: dict[str, Any] = {}
    accepted = inspect.signature(cls.__init__).parameters
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = optax.constant_schedule(cfg.sigma_init)
    if cfg.optimizer is not None:
        if "optimizer" not in accepted:
            raise ConfigError(f"config key 'strategy.optimizer' does not apply to {cls.__name__} "
                              f"(it takes no gradient optimizer); leave it null")
        kwargs["optimizer"] = _optimizer(cfg.optimizer, cfg.learning_rate)
    elif name in SMALL_STEP_DEFAULTS:
        kwargs["optimizer"] = optax.adam(learning_rate=ADAM_STEP_PER_SIGMA * cfg.sigma_init)
    try:
        algo = cls(population_size=cfg.population_size, solution=solution, **kwargs)
    except AssertionError as e:  # evosax validates with asserts, e.g. "Population size must be even."
        raise ConfigError(f"config key 'strategy.population_size' rejected by {cls.__name__}: {e}") from None
    params = algo.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(cfg.sigma_init, jnp.float32))
    return Strategy(algo=algo, params=params, sigma_init=cfg.sigma_init)
