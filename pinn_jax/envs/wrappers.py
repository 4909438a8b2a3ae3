"""Observation transforms for permutation-invariance experiments, and the action mapping.

``ActionWrapper`` turns a policy's output vector into the env's action (:class:`ActionSpec`): a ``Box``
gets ``tanh`` outputs scaled affinely to ``[low, high]``, a ``Discrete(n)`` the index of the largest of
``n`` outputs. Policies therefore always emit vectors in ``[-1, 1]``.

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
import numpy as np
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


class _Wrapper(environment.Environment):
    """A gymnax env around another, comparing and hashing by value (the class and attributes of both), so
    two wrappers built alike are the same static argument to ``jax.jit`` and reuse its compiled code."""

    def __init__(self, env: environment.Environment) -> None:
        super().__init__()
        self.env = env

    def _identity(self) -> tuple:
        return type(self).__qualname__, tuple(sorted((k, _identity(v)) for k, v in vars(self).items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Wrapper) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def is_terminated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_terminated(getattr(state, "env_state", state), params)

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_truncated(getattr(state, "env_state", state), params)

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    def action_space(self, params: Any = None) -> Any:
        return self.env.action_space(params)

    def observation_space(self, params: Any = None) -> Any:
        return self.env.observation_space(params)


def _identity(value: Any) -> Any:
    if isinstance(value, _Wrapper):
        return value._identity()
    if isinstance(value, environment.Environment):
        return (type(value).__module__, type(value).__qualname__,
                tuple(sorted((k, repr(v)) for k, v in vars(value).items())))
    return repr(value)


@struct.dataclass
class ActionSpec:
    """How a policy's output vector (``dim`` values in ``[-1, 1]``) becomes an env action.

    ``discrete``: the action is the index of the largest output (``dim`` = the number of actions);
    otherwise the outputs are scaled affinely to the box, ``center + half * a``, and shaped ``shape``.
    """

    discrete: bool = struct.field(pytree_node=False, default=False)
    dim: int = struct.field(pytree_node=False, default=1)
    shape: tuple[int, ...] = struct.field(pytree_node=False, default=(1,))
    center: tuple[float, ...] = struct.field(pytree_node=False, default=(0.0,))
    half: tuple[float, ...] = struct.field(pytree_node=False, default=(1.0,))

    @classmethod
    def from_space(cls, space: Any) -> "ActionSpec":
        """The mapping for a gymnax ``Discrete`` or ``Box`` action space (``ValueError`` for others)."""
        if isinstance(space, spaces.Discrete):
            return cls(discrete=True, dim=int(space.n), shape=())
        if isinstance(space, spaces.Box):
            shape = tuple(int(d) for d in space.shape)
            low = np.broadcast_to(np.asarray(space.low, np.float64), shape).ravel()
            high = np.broadcast_to(np.asarray(space.high, np.float64), shape).ravel()
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"an unbounded Box action space ({space.low}, {space.high}) cannot be scaled to")
            return cls(discrete=False, dim=int(np.prod(shape, dtype=int)), shape=shape,
                       center=tuple(float(c) for c in (high + low) / 2), half=tuple(float(h) for h in (high - low) / 2))
        raise ValueError(f"action space {type(space).__name__} is neither Discrete nor Box")

    def decode(self, output: jax.Array) -> jax.Array:
        """The env action for a policy output vector ``(dim,)``."""
        if self.discrete:
            return jnp.argmax(output).astype(jnp.int32)
        a = jnp.asarray(output, jnp.float32)
        if any(c != 0.0 for c in self.center) or any(h != 1.0 for h in self.half):  # [-1, 1] stays bit-exact
            a = jnp.asarray(self.center, jnp.float32) + jnp.asarray(self.half, jnp.float32) * a
        return a.reshape(self.shape)


class ActionWrapper(_Wrapper):
    """Maps a policy's output vector to the inner env's action with an :class:`ActionSpec`; the state is the
    inner env's. Its ``action_space`` is the policy's side: ``Box(-1, 1, (spec.dim,))``."""

    def __init__(self, env: environment.Environment, spec: ActionSpec) -> None:
        super().__init__(env)
        self.spec = spec

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        return self.env.reset_env(key, params)

    def step_env(self, key: jax.Array, state: Any, action: jax.Array, params: Any) -> tuple:
        return self.env.step_env(key, state, self.spec.decode(action), params)

    @property
    def num_actions(self) -> int:
        return self.spec.dim

    def action_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.spec.dim,), jnp.float32)

    def observation_space(self, params: Any = None) -> Any:
        return self.env.observation_space(self.default_params if params is None else params)


class ObsTransformWrapper(_Wrapper):
    """Apply an ``ObsTransform`` to any gymnax environment's observations."""

    def __init__(self, env: environment.Environment, cfg: ObsTransform) -> None:
        super().__init__(env)
        self.cfg = cfg

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
