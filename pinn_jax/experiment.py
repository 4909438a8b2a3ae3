"""The configured experiment, built in one place: the policy, the wrapped environment and its params, the
number of features the policy sees, a parameter template and the flat-parameter layout.

Training, benchmarks, distillation, model loading and the shipped agents all build what a config
describes through :func:`setup`, so they cannot disagree on the layout of a flat parameter vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
from jax.flatten_util import ravel_pytree

from pinn_jax.config import Config, EnvConfig, PolicyConfig, TrainConfig
from pinn_jax.envs import (CARTPOLE_NAMES, NOT_VECTOR, ActionSpec, ActionWrapper, ObsTransform, ObsTransformWrapper,
                           is_swingup,
                           make, names)
from pinn_jax.envs.fitness import Fitness, from_config
from pinn_jax.errors import ConfigError
from pinn_jax.policies import REGISTRY, Policy, make_policy

__all__ = ["Experiment", "setup", "build_env", "action_spec", "build_policy", "transform_from", "obs_dim_of"]


def build_env(env_cfg: EnvConfig, transform: ObsTransform = ObsTransform(),
              env: Any = None, fitness: Fitness = Fitness()) -> tuple[ObsTransformWrapper, Any]:
    """The configured environment, its actions mapped from policy outputs (:class:`ActionWrapper`) and its
    observations transformed, and its params; ``fitness`` shapes its training fitness (not at all by default,
    :mod:`pinn_jax.envs.fitness`). ``env`` replaces the registry's: a user's own gymnax ``Environment``
    (its ``default_params``) or an ``(env, env_params)`` pair; ``env.max_steps`` caps its episodes when its params
    have ``max_steps_in_episode``. Only flat vector observations are supported; ``env.start`` must agree with a
    swing-up name that fixes the start (``CartPoleSwingUp-easy``) and keep its default elsewhere."""
    if env is None:
        env, params = _registered_env(env_cfg)
        name = env_cfg.name
    else:
        env, params = env if isinstance(env, tuple) else (env, env.default_params)
        if hasattr(params, "max_steps_in_episode"):
            params = params.replace(max_steps_in_episode=env_cfg.max_steps)
        name = f"your env {type(env).__name__}"
    shape = tuple(env.observation_space(params).shape)
    if len(shape) != 1:
        raise _not_vector(name, f"arrays of shape {shape}")
    try:
        spec = ActionSpec.from_space(env.action_space(params))
    except ValueError as e:
        raise ConfigError(f"config key 'env.name': {name}: {e}") from None
    if name == env_cfg.name:
        _check_start(env_cfg)
    return ObsTransformWrapper(ActionWrapper(fitness.wrap(env), spec), transform), params


def _check_start(env_cfg: EnvConfig) -> None:
    """``env.start`` agrees with a swing-up name that fixes it, and keeps its default off the swing-up."""
    fixed = CARTPOLE_NAMES.get(env_cfg.name)
    if fixed is not None and env_cfg.start != fixed:
        raise ConfigError(f"config keys 'env.name' and 'env.start' disagree: {env_cfg.name} starts {fixed}, env.start "
                          f"is {env_cfg.start!r}; set env.start: {fixed}, or use CartPoleSwingUp-v0")
    if not is_swingup(env_cfg.name) and env_cfg.start != EnvConfig.start:
        raise ConfigError(f"config key 'env.start' chooses the swing-up's start; {env_cfg.name} has none, so it must "
                          f"be {EnvConfig.start!r} (the default), got {env_cfg.start!r}")


def _not_vector(name: str, observes: str) -> ConfigError:
    return ConfigError(f"config key 'env.name': {name} observes {observes}; pinn_jax's policies take flat vectors of "
                       f"features (vector-observation envs only)")


def _registered_env(env_cfg: EnvConfig) -> tuple[Any, Any]:
    """The registry's env of ``env.name`` with ``env.max_steps`` and, for the swing-up, ``env.start``."""
    if env_cfg.name in NOT_VECTOR:  # refused before it is built (MNISTBandit-bsuite would download its data)
        raise _not_vector(env_cfg.name, NOT_VECTOR[env_cfg.name])
    if env_cfg.name not in names():
        raise ConfigError(f"config key 'env.name' must be one of {', '.join(names())}, got {env_cfg.name!r}")
    overrides: dict[str, Any] = {"max_steps_in_episode": env_cfg.max_steps}
    if is_swingup(env_cfg.name):
        overrides["hard"] = env_cfg.start == "hard"
        overrides["upright"] = env_cfg.start == "upright"
    return make(env_cfg.name, **overrides)


def action_spec(env: ObsTransformWrapper) -> ActionSpec:
    """How the policy's outputs become actions in an env made by :func:`build_env`."""
    return env.env.spec


def transform_from(train_cfg: TrainConfig) -> ObsTransform:
    """Train-time observation augmentation from the config (validated by ``ObsTransform``)."""
    try:
        return ObsTransform(shuffle=train_cfg.shuffle, shuffle_every=train_cfg.shuffle_every,
                            num_noise=train_cfg.num_noise)
    except ConfigError as e:
        raise ConfigError(f"config keys 'train.shuffle*' / 'train.num_noise': {e}") from None


def build_policy(policy_cfg: PolicyConfig, actions: ActionSpec = ActionSpec()) -> Policy:
    """The configured policy (the registry's list of the config fields it takes) for an env's actions."""
    fields = {f: getattr(policy_cfg, f) for f in REGISTRY[policy_cfg.name].fields}
    return make_policy(policy_cfg.name, act_dim=actions.dim, discrete=actions.discrete, **fields)


def obs_dim_of(env: ObsTransformWrapper, env_params: Any) -> int:
    """Number of features the policy receives (after noise features are appended)."""
    obs, _ = jax.eval_shape(env.reset_env, jax.random.key(0), env_params)
    return int(obs.shape[-1])


@dataclass(frozen=True, eq=False)
class Experiment:
    """What a config describes, ready to run: ``unravel`` turns a flat vector of ``num_params`` values into
    a parameter pytree shaped like ``template`` (the policy's initialiser for ``obs_dim`` features)."""

    cfg: Config
    policy: Policy
    env: ObsTransformWrapper
    env_params: Any
    obs_dim: int
    template: Any
    unravel: Callable[[jax.Array], Any]
    num_params: int
    fitness_env: ObsTransformWrapper  # the training fitness's env (``env`` shaped by the ``train`` knobs, see
    # :mod:`pinn_jax.envs.fitness`; equal to ``env`` when they are all neutral), with ``env_params``


def setup(cfg: Config, env: Any = None, policy: Policy | None = None) -> Experiment:
    """Build the experiment of ``cfg`` (training env and observation transform). ``env`` (a gymnax ``Environment``
    or ``(env, env_params)``) and ``policy`` (an object meeting the :class:`~pinn_jax.policies.Policy` protocol)
    replace the ones ``env.name`` and ``policy.name`` describe."""
    own_env, transform = env, transform_from(cfg.train)
    env, env_params = build_env(cfg.env, transform, own_env)
    if policy is None:
        policy = build_policy(cfg.policy, action_spec(env))
    elif not isinstance(policy, Policy):
        raise ConfigError(f"policy: {type(policy).__name__} does not meet the Policy protocol (pinn_jax.policies.Policy)")
    obs_dim = obs_dim_of(env, env_params)
    template = policy.init(jax.random.PRNGKey(0), obs_dim)
    flat, unravel = ravel_pytree(template)
    return Experiment(cfg=cfg, policy=policy, env=env, env_params=env_params, obs_dim=obs_dim,
                      template=template, unravel=unravel, num_params=int(flat.size),
                      fitness_env=build_env(cfg.env, transform, own_env, from_config(cfg))[0])
