"""Memory, estimated before work: a run, an evaluation or a video that cannot fit is refused in one line naming what
to make smaller, the estimate and the memory available, instead of ending in an out-of-memory traceback, an abort
or a segfault after minutes of compiling.

The estimates are rough upper bounds (within a small factor) of the big arrays alone, found from shapes
(``jax.eval_shape``: nothing is allocated or compiled): the search state (CMA-ES's covariance is parameters²),
the population's parameters, and the carry of every episode stepped at once (observation, env state, policy state
and the step's outputs, such as the attention matrix). :func:`require` compares one with the memory free for JAX:
the default device's on a GPU, else MemAvailable of ``/proc/meminfo``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from pinn_jax.config import Config
from pinn_jax.errors import INT32_MAX, ConfigError, UserError
from pinn_jax.experiment import components, obs_dim_of
from pinn_jax.policies import REGISTRY, Policy
from pinn_jax.training.es import make_strategy

__all__ = ["available", "require", "size", "tree_bytes", "episode_bytes", "training_bytes", "check_training"]

EPISODE_COPIES = 3  # an episode's carry lives in the scan's old and new carry and in the step's temporaries
MEMBER_COPIES = 3  # a member's parameters: the flat population asked, its parameter pytrees, the ES's noise
STATE_COPIES = 4  # the search state, the new one a tell computes, and an eigendecomposition's copy and workspace


def size(n: float) -> str:
    """Bytes for people: ``512 B``, ``3.6 TiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log(n, 1024)) if n >= 1 else 0, len(units) - 1)
    return f"{n:.0f} B" if power == 0 else f"{n / 1024**power:.1f} {units[power]}"


def available() -> tuple[float, str]:
    """Bytes free for JAX's arrays and where that figure comes from: the default device's free memory on a GPU
    (its allocator's limit less what is in use), else MemAvailable of ``/proc/meminfo`` (infinity where neither
    can be read)."""
    device = jax.local_devices()[0]
    if device.platform == "gpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"free on {device.device_kind}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    return math.inf, "unknown"


def require(need: float, what: str, error: type[UserError] = UserError) -> None:
    """Refuse, in one line starting with ``what`` (the key or option to make smaller), ``need`` bytes that exceed
    the memory :func:`available`."""
    free, source = available()
    if need > free:
        raise error(f"{what} needs about {size(need)}, more than the {size(free)} of memory available ({source})")


def tree_bytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ``jax.ShapeDtypeStruct`` (Python ints: no overflow)."""
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def episode_bytes(policy: Policy, env: Any, env_params: Any, params: Any) -> int:
    """Bytes of one episode as it is stepped (``params``: one member's, arrays or shapes): its observation, env
    state, policy state and the step's outputs (action, attention and other diagnostics), ``EPISODE_COPIES``
    times."""
    obs, env_state = jax.eval_shape(env.reset_env, jax.random.PRNGKey(0), env_params)
    prepared = jax.eval_shape(policy.prepare, params)
    state = jax.eval_shape(lambda: policy.initial_state(obs.shape[-1]))
    act = jax.ShapeDtypeStruct((policy.act_dim,), jnp.float32)
    out = jax.eval_shape(policy.step, prepared, state, obs, act)
    return EPISODE_COPIES * tree_bytes((obs, env_state, state, out))


def training_bytes(cfg: Config, env: Any = None, policy: Policy | None = None,
                   stop: float = math.inf) -> dict[str, int]:
    """A run's big arrays by what holds them (``env``, ``policy``: as in :func:`pinn_jax.experiment.setup`): the
    search state, the population's parameters, its episodes (population × rollouts, split over the devices that
    share this memory) and the held-out episodes. Where the first two alone exceed ``stop`` bytes, the episodes
    are left out (their shapes come from the policy's ``prepare``, which may build big constant tables)."""
    policy, env, env_params = components(cfg, env, policy)
    obs_dim = obs_dim_of(env, env_params)
    key = jax.random.PRNGKey(0)
    template = jax.eval_shape(lambda k: policy.init(k, obs_dim), key)
    num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(template))
    if num_params > INT32_MAX:
        raise ConfigError(f"config section 'policy' gives {policy.kind} {num_params} parameters, more than a search "
                          f"can hold ({INT32_MAX}, int32)")

    def unscored(population: Any, _: jax.Array) -> jax.Array:  # shapes only: nothing is evaluated
        return jnp.zeros(jax.tree.leaves(population)[0].shape[:1], jnp.float32)

    search = jax.eval_shape(lambda t: make_strategy(cfg.strategy, t).init(key, t, unscored), template)
    pop, tc = cfg.strategy.population_size, cfg.train
    parts = {"search state": STATE_COPIES * tree_bytes(search),
             "population": pop * MEMBER_COPIES * tree_bytes(template)}
    if sum(parts.values()) > stop:
        return parts
    parts["population"] += pop * tree_bytes(jax.eval_shape(policy.prepare, template))
    episode = episode_bytes(policy, env, env_params, template)
    gpu = jax.local_devices()[0].platform == "gpu"
    sharing = jax.device_count() // (1 if gpu else jax.local_device_count())  # the episodes are sharded
    return {**parts, "episodes": pop * tc.rollouts * episode // sharing,
            "held-out episodes": tc.eval_episodes * episode if tc.eval_every else 0}


# the config keys that make a run bigger, when the policy is the config's: those of its policy section too
_SIZE_KEYS = (("strategy", "population_size"), ("train", "rollouts"), ("train", "eval_episodes"),
              ("train", "num_noise"))


def check_training(cfg: Config, env: Any = None, policy: Policy | None = None) -> None:
    """Refuse a run whose big arrays (:func:`training_bytes`) cannot fit, in one line naming the config key that
    adds the most to them (set back to its default) and the estimate by what holds it."""
    free = available()[0]
    parts = training_bytes(cfg, env, policy, stop=free)
    need = sum(parts.values())
    if need <= free:
        return
    keys = list(_SIZE_KEYS)
    if policy is None:
        keys += [("policy", k) for k in REGISTRY[cfg.policy.name].fields]
    saved: dict[tuple[str, str], int] = {}  # bytes saved by setting a key back to its default
    for section, key in keys:
        part = getattr(cfg, section)
        default = getattr(type(part)(), key)
        if getattr(part, key) == default:
            continue
        try:
            smaller = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **{key: default})})
            saved[section, key] = need - sum(training_bytes(smaller, env, policy, free).values())
        except ConfigError:  # its default does not go with the rest of the config
            continue
    by = ", ".join(f"{what} {size(n)}" for what, n in sorted(parts.items(), key=lambda p: -p[1]) if n)
    most = max(saved, key=saved.__getitem__, default=None)
    if most is not None and saved[most] > 0:
        section, key = most
        require(need, f"config key '{section}.{key}' = {getattr(getattr(cfg, section), key)}: the run ({by})",
                ConfigError)
    require(need, f"the run ({by})", ConfigError)
