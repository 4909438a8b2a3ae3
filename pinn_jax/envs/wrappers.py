"""Observation transforms for permutation-invariance experiments.

Pure, PRNG-keyed and vmappable.  The feature axis is the last axis of the
observation.  At every step (including reset) ``num_noise`` i.i.d.
Normal(0, noise_std) features are appended, then the features are permuted by
the permutation in force, ``obs_out = concat(obs, noise)[..., perm]``.  The
permutation is drawn at reset (identity when ``shuffle`` is False) and, when
``shuffle_every = k > 0``, redrawn before producing the observation of step
``t`` whenever ``t % k == 0``.  The permutation lives in ``TransformState`` so
a rollout is reproducible from its key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from pinn_jax.errors import ConfigError


@struct.dataclass
class ObsTransform:
    """Static, hashable observation-transform config; an invalid one raises ``ConfigError`` (the one check of
    these fields, for training configs and evaluation conditions alike)."""

    shuffle: bool = struct.field(pytree_node=False, default=False)
    shuffle_every: int = struct.field(pytree_node=False, default=0)
    num_noise: int = struct.field(pytree_node=False, default=0)
    noise_std: float = struct.field(pytree_node=False, default=0.1)

    def __post_init__(self) -> None:
        if isinstance(self.shuffle_every, bool) or not isinstance(self.shuffle_every, int) or self.shuffle_every < 0:
            raise ConfigError(f"shuffle_every must be an int >= 0, got {self.shuffle_every!r}")
        if isinstance(self.num_noise, bool) or not isinstance(self.num_noise, int) or self.num_noise < 0:
            raise ConfigError(f"num_noise must be an int >= 0, got {self.num_noise!r}")
        if self.shuffle_every and not self.shuffle:
            raise ConfigError(f"shuffle_every={self.shuffle_every} needs shuffle=True")
        if not self.noise_std > 0:
            raise ConfigError(f"noise_std must be > 0, got {self.noise_std!r}")

    def out_dim(self, obs_dim: int) -> int:
        """Number of output features for ``obs_dim`` input features."""
        return obs_dim + self.num_noise


@struct.dataclass
class TransformState:
    perm: jax.Array  # int32 (obs_dim + num_noise,)
    t: jax.Array  # int32 step counter (0 at reset)


def _augment(key: jax.Array, cfg: ObsTransform, obs: jax.Array) -> jax.Array:
    obs = jnp.asarray(obs)
    if cfg.num_noise == 0:
        return obs
    dtype = jnp.result_type(obs.dtype, jnp.float32)
    noise = cfg.noise_std * jax.random.normal(
        key, obs.shape[:-1] + (cfg.num_noise,), dtype)
    return jnp.concatenate([obs.astype(dtype), noise], axis=-1)


def _new_perm(key: jax.Array, cfg: ObsTransform, n: int) -> jax.Array:
    if cfg.shuffle:
        return jax.random.permutation(key, n).astype(jnp.int32)
    return jnp.arange(n, dtype=jnp.int32)


def transform_reset(
    key: jax.Array, cfg: ObsTransform, obs: jax.Array
) -> tuple[jax.Array, TransformState]:
    """Draw the initial permutation and transform the reset observation."""
    k_noise, k_perm = jax.random.split(key)
    full = _augment(k_noise, cfg, obs)
    perm = _new_perm(k_perm, cfg, full.shape[-1])
    return full[..., perm], TransformState(perm=perm, t=jnp.array(0, jnp.int32))


def transform_step(
    key: jax.Array, cfg: ObsTransform, tstate: TransformState, obs: jax.Array
) -> tuple[jax.Array, TransformState]:
    """Advance the counter, maybe redraw the permutation, transform ``obs``."""
    k_noise, k_perm = jax.random.split(key)
    full = _augment(k_noise, cfg, obs)
    t = jnp.asarray(tstate.t + 1, jnp.int32)
    perm = tstate.perm
    if cfg.shuffle and cfg.shuffle_every > 0:
        perm = jnp.where(t % cfg.shuffle_every == 0,
                         _new_perm(k_perm, cfg, full.shape[-1]), perm)
    return full[..., perm], TransformState(perm=perm, t=t)


@struct.dataclass
class WrappedState(environment.EnvState):
    env_state: Any
    transform: TransformState
    time: jax.Array  # mirrors env_state.time


class ObsTransformWrapper(environment.Environment):
    """Apply an ``ObsTransform`` to any gymnax environment's observations.

    Wrappers compare and hash by value (the inner env's class and attributes, and the transform), so two
    wrappers built alike are the same static argument to ``jax.jit`` and reuse its compiled code.
    """

    def __init__(self, env: environment.Environment, cfg: ObsTransform) -> None:
        super().__init__()
        self.env = env
        self.cfg = cfg

    def _identity(self) -> tuple:
        inner = tuple(sorted((k, repr(v)) for k, v in vars(self.env).items()))
        return type(self.env).__module__, type(self.env).__qualname__, inner, self.cfg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObsTransformWrapper) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def reset_env(self, key: jax.Array, params: Any
                  ) -> tuple[jax.Array, WrappedState]:
        k_env, k_tr = jax.random.split(key)
        obs, env_state = self.env.reset_env(k_env, params)
        obs, tstate = transform_reset(k_tr, self.cfg, obs)
        return obs, WrappedState(env_state=env_state, transform=tstate,
                                 time=env_state.time)

    def step_env(self, key: jax.Array, state: WrappedState, action: Any,
                 params: Any
                 ) -> tuple[jax.Array, WrappedState, jax.Array, jax.Array, dict]:
        k_env, k_tr = jax.random.split(key)
        obs, env_state, reward, terminated, info = self.env.step_env(
            k_env, state.env_state, action, params)
        obs, tstate = transform_step(k_tr, self.cfg, state.transform, obs)
        return obs, WrappedState(env_state=env_state, transform=tstate,
                                 time=env_state.time), reward, terminated, info

    def is_terminated(self, state: WrappedState, params: Any) -> jax.Array:
        return self.env.is_terminated(state.env_state, params)

    def is_truncated(self, state: WrappedState, params: Any) -> jax.Array:
        return self.env.is_truncated(state.env_state, params)

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    def action_space(self, params: Any = None) -> Any:
        return self.env.action_space(params)

    def observation_space(self, params: Any = None) -> Any:
        """Inner Box widened to ``out_dim`` features (noise is unbounded;
        with shuffling every feature gets the loosest bound)."""
        params = self.default_params if params is None else params
        space = self.env.observation_space(params)
        if not isinstance(space, spaces.Box):
            if self.cfg.num_noise or self.cfg.shuffle:
                raise NotImplementedError("only Box observation spaces")
            return space
        shape = tuple(space.shape)
        n = self.cfg.num_noise
        low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape)
        high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape)
        pad = shape[:-1] + (n,)
        low = jnp.concatenate([low, jnp.full(pad, -jnp.inf)], axis=-1)
        high = jnp.concatenate([high, jnp.full(pad, jnp.inf)], axis=-1)
        if self.cfg.shuffle:
            low = jnp.full_like(low, low.min())
            high = jnp.full_like(high, high.max())
        out_shape = shape[:-1] + (self.cfg.out_dim(shape[-1]),)
        return spaces.Box(low, high, shape=out_shape,
                          dtype=jnp.result_type(space.dtype, jnp.float32)
                          if n else space.dtype)
