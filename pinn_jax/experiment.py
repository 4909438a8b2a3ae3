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
from pinn_jax.envs import (
    CARTPOLE_NAMES,
    NOT_VECTOR,
    ActionSpec,
    ActionWrapper,
    ObsTransform,
    ObsTransformWrapper,
    Patches,
    PatchWrapper,
    is_swingup,
    make,
    names,
)
from pinn_jax.envs.fitness import Fitness, from_config
from pinn_jax.errors import ConfigError
from pinn_jax.policies import REGISTRY, Policy, make_policy

__all__ = ["Experiment", "PolicyEnv", "setup", "components", "build_env", "action_spec", "build_policy",
           "transform_from", "obs_dim_of"]

PolicyEnv = ObsTransformWrapper | PatchWrapper  # an env as a policy sees it: vectors, or image patches


def build_env(env_cfg: EnvConfig, transform: ObsTransform = ObsTransform(), env: Any = None,
              fitness: Fitness = Fitness(), policy: Policy | None = None) -> tuple[PolicyEnv, Any]:
    """The configured environment, its actions mapped from policy outputs (:class:`ActionWrapper`) and its
    observations transformed, and its params; ``fitness`` shapes its training fitness (not at all by default,
    :mod:`pinn_jax.envs.fitness`). ``env`` replaces the registry's: a user's own gymnax ``Environment``
    (its ``default_params``) or an ``(env, env_params)`` pair; ``env.max_steps`` caps its episodes when its params
    have ``max_steps_in_episode``. ``env.start`` must agree with a swing-up name that fixes the start
    (``CartPoleSwingUp-easy``) and keep its default elsewhere.

    Vector observations go to the policy as they are. Image observations ``(H, W, C)`` need ``env.patch_size``:
    their frames are cut into patches (:mod:`pinn_jax.envs.patches`, ``transform`` applied to patches), given as
    ``(patches, features)`` to a ``policy`` that ``takes_patches`` (its ``frames`` frames per patch), else
    flattened into one vector of the current frame's patches (``policy`` None: such a vector policy)."""
    env, params, name, spec = _inner_env(env_cfg, env)
    patches = _patches(env_cfg, name, tuple(env.observation_space(params).shape), policy)
    if name == env_cfg.name:
        _check_start(env_cfg)
    inner = ActionWrapper(fitness.wrap(env), spec)
    if patches is None:
        return ObsTransformWrapper(inner, transform), params
    try:
        return PatchWrapper(inner, patches, transform), params
    except ConfigError as e:
        raise ConfigError(f"config key 'env.patch_size': {name}: {e}") from None


def _inner_env(env_cfg: EnvConfig, env: Any = None) -> tuple[Any, Any, str, ActionSpec]:
    """The bare env (the registry's, or the user's ``env``), its params, its name in messages and how policy
    outputs become its actions."""
    if env is None:
        env, params = _registered_env(env_cfg)
        name = env_cfg.name
    else:
        env, params = env if isinstance(env, tuple) else (env, env.default_params)
        if hasattr(params, "max_steps_in_episode"):
            params = params.replace(max_steps_in_episode=env_cfg.max_steps)
        name = f"your env {type(env).__name__}"
    try:
        spec = ActionSpec.from_space(env.action_space(params))
    except ValueError as e:
        raise ConfigError(f"config key 'env.name': {name}: {e}") from None
    return env, params, name, spec


def _patches(env_cfg: EnvConfig, name: str, shape: tuple[int, ...], policy: Policy | None) -> Patches | None:
    """How observations of ``shape`` reach ``policy``: cut into patches, or as they are (None)."""
    takes_patches = getattr(policy, "takes_patches", False)
    if len(shape) == 1:
        if env_cfg.patch_size is not None:
            raise ConfigError(f"config key 'env.patch_size' cuts image frames into patches; {name} observes vectors "
                              f"of shape {shape}: set it to null")
        if takes_patches:
            raise ConfigError(f"config key 'policy.name': {policy.kind} observes image patches; {name} observes "
                              f"vectors of shape {shape}")
        return None
    if len(shape) != 3 or env_cfg.patch_size is None:
        raise ConfigError(f"config key 'env.name': {name} observes arrays of shape {shape}; pinn_jax's policies take "
                          f"flat vectors of features (vector-observation envs only) unless env.patch_size cuts "
                          f"(height, width, channels) frames into patches (policy vision_attention)")
    return Patches(size=env_cfg.patch_size, frames=policy.frames if takes_patches else 1, flatten=not takes_patches)


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


def action_spec(env: PolicyEnv) -> ActionSpec:
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


def obs_dim_of(env: PolicyEnv, env_params: Any) -> int:
    """Number of features the policy receives (after noise features are appended; per patch for patches)."""
    obs, _ = jax.eval_shape(env.reset_env, jax.random.key(0), env_params)
    return int(obs.shape[-1])


@dataclass(frozen=True, eq=False)
class Experiment:
    """What a config describes, ready to run: ``unravel`` turns a flat vector of ``num_params`` values into
    a parameter pytree shaped like ``template`` (the policy's initialiser for ``obs_dim`` features)."""

    cfg: Config
    policy: Policy
    env: PolicyEnv
    env_params: Any
    obs_dim: int
    template: Any
    unravel: Callable[[jax.Array], Any]
    num_params: int
    fitness_env: PolicyEnv  # the training fitness's env (``env`` shaped by the ``train`` knobs, see
    # :mod:`pinn_jax.envs.fitness`; equal to ``env`` when they are all neutral), with ``env_params``


def components(cfg: Config, env: Any = None, policy: Policy | None = None) -> tuple[Policy, PolicyEnv, Any]:
    """The policy, the training env (observation transform applied) and its params of ``cfg``, as :func:`setup`
    builds them; no parameters are made. ``env`` and ``policy`` as in :func:`setup`."""
    if policy is None:
        policy = build_policy(cfg.policy, _inner_env(cfg.env, env)[3])
    elif not isinstance(policy, Policy):
        raise ConfigError(f"policy: {type(policy).__name__} does not meet the Policy protocol (pinn_jax.policies.Policy)")
    return (policy, *build_env(cfg.env, transform_from(cfg.train), env, policy=policy))


def setup(cfg: Config, env: Any = None, policy: Policy | None = None) -> Experiment:
    """Build the experiment of ``cfg`` (training env and observation transform). ``env`` (a gymnax ``Environment``
    or ``(env, env_params)``) and ``policy`` (an object meeting the :class:`~pinn_jax.policies.Policy` protocol)
    replace the ones ``env.name`` and ``policy.name`` describe."""
    own_env, transform = env, transform_from(cfg.train)
    policy, env, env_params = components(cfg, own_env, policy)
    obs_dim = obs_dim_of(env, env_params)
    template = policy.init(jax.random.PRNGKey(0), obs_dim)
    flat, unravel = ravel_pytree(template)
    return Experiment(cfg=cfg, policy=policy, env=env, env_params=env_params, obs_dim=obs_dim,
                      template=template, unravel=unravel, num_params=int(flat.size),
                      fitness_env=build_env(cfg.env, transform, own_env, from_config(cfg), policy)[0])
