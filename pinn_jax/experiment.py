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
from pinn_jax.envs import ObsTransform, ObsTransformWrapper, is_swingup, make, names
from pinn_jax.errors import ConfigError
from pinn_jax.policies import REGISTRY, Policy, make_policy

__all__ = ["Experiment", "setup", "build_env", "build_policy", "transform_from", "obs_dim_of"]


def build_env(env_cfg: EnvConfig, transform: ObsTransform = ObsTransform()) -> tuple[ObsTransformWrapper, Any]:
    """The configured environment wrapped with the observation transform, and its params."""
    if env_cfg.name not in names():
        raise ConfigError(f"config key 'env.name' must be one of {', '.join(names())}, got {env_cfg.name!r}")
    overrides: dict[str, Any] = {"max_steps_in_episode": env_cfg.max_steps}
    if is_swingup(env_cfg.name):
        overrides["hard"] = env_cfg.start == "hard"
    env, params = make(env_cfg.name, **overrides)
    return ObsTransformWrapper(env, transform), params


def transform_from(train_cfg: TrainConfig) -> ObsTransform:
    """Train-time observation augmentation from the config (validated by ``ObsTransform``)."""
    try:
        return ObsTransform(shuffle=train_cfg.shuffle, shuffle_every=train_cfg.shuffle_every,
                            num_noise=train_cfg.num_noise)
    except ConfigError as e:
        raise ConfigError(f"config keys 'train.shuffle*' / 'train.num_noise': {e}") from None


def build_policy(policy_cfg: PolicyConfig) -> Policy:
    """The configured policy, from the registry's list of the fields it takes."""
    spec = REGISTRY[policy_cfg.name]
    return make_policy(policy_cfg.name, **{f: getattr(policy_cfg, f) for f in spec.fields})


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


def setup(cfg: Config) -> Experiment:
    """Build the experiment of ``cfg`` (training env and observation transform)."""
    policy = build_policy(cfg.policy)
    env, env_params = build_env(cfg.env, transform_from(cfg.train))
    obs_dim = obs_dim_of(env, env_params)
    template = policy.init(jax.random.PRNGKey(0), obs_dim)
    flat, unravel = ravel_pytree(template)
    return Experiment(cfg=cfg, policy=policy, env=env, env_params=env_params, obs_dim=obs_dim,
                      template=template, unravel=unravel, num_params=int(flat.size))
