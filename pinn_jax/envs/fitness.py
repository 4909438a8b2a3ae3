"""Fitness shaping: a training fitness changed by six knobs, as one gymnax wrapper.

Each knob is the config key ``train.<knob>``; at its neutral value it is the paper's fitness:

* ``reward_power`` p (1): the pole factor (cos θ + 1)/2 is raised to p, a fitness sharper near the top.
* ``fall_after`` N (None, never): an episode also ends when the pole is below horizontal after N steps.
* ``fall_credit`` c (0): such an ending, the cart still on the track, is paid c per step left before the
  training episode's end, so that after a fall the fitness still prefers keeping the cart.
* ``cart_only_steps`` N (0): the episode's first N steps pay the cart factor alone: catching the cart first
  costs no reward.
* ``start_scale`` s (1): the hard start's ranges shrink to s times their width around hanging at rest, a
  curriculum between the easy start and the hard one.
* ``alive_bonus`` b (0): every step taken pays b more, any env: where an episode ends on a mistake (a ball
  missed in Breakout, a hit in Asterix) the fitness grows with the time kept in play, long before the sparse
  game reward does.

They shape training only, and the swing-up only (``start_scale`` its hard start only, ``alive_bonus`` any env);
held-out evaluation
and every score pinn_jax reports use the bare env. With every knob neutral :meth:`Fitness.wrap` adds no
wrapper, so the compiled step is the paper's. A new knob is a field of :class:`Fitness` and a branch of
:class:`FitnessWrapper` here, and its key in ``TrainConfig``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from pinn_jax.envs import is_swingup
from pinn_jax.envs.cartpole_swingup import HANGING, CartPoleSwingUp, EnvParams, EnvState, hard_start_range, start_state
from pinn_jax.envs.wrappers import _Wrapper
from pinn_jax.errors import ConfigError

__all__ = ["ANY_ENV", "Fitness", "FitnessWrapper", "KNOBS", "from_config"]


@struct.dataclass
class Fitness:
    """A training fitness: the knobs (defaults: neutral, the paper's) over episodes of ``episode_steps``."""

    reward_power: float = struct.field(pytree_node=False, default=1.0)
    fall_after: int | None = struct.field(pytree_node=False, default=None)
    fall_credit: float = struct.field(pytree_node=False, default=0.0)
    cart_only_steps: int = struct.field(pytree_node=False, default=0)
    start_scale: float = struct.field(pytree_node=False, default=1.0)
    alive_bonus: float = struct.field(pytree_node=False, default=0.0)
    episode_steps: int = struct.field(pytree_node=False, default=1000)  # not a knob: fall_credit's steps left

    def shaped(self) -> dict[str, Any]:
        """The knobs away from their neutral values, in ``KNOBS`` order."""
        return {k: getattr(self, k) for k in KNOBS if getattr(self, k) != getattr(_PAPER, k)}

    def wrap(self, env: environment.Environment) -> environment.Environment:
        """``env`` (the swing-up, or any env with ``alive_bonus`` alone) with this fitness: ``env`` itself when
        every knob is neutral."""
        return FitnessWrapper(env, self) if self.shaped() else env


KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Fitness) if f.name != "episode_steps")
ANY_ENV: tuple[str, ...] = ("alive_bonus",)  # the knobs that shape any env's fitness, not only the swing-up's
_PAPER = Fitness()


def _shown(value: Any) -> str:
    """A neutral value as a config file writes it."""
    return "null" if value is None else f"{value:g}"


def from_config(cfg: Any) -> Fitness:
    """The training fitness of a :class:`~pinn_jax.config.Config` (its ``train.<knob>`` keys and training
    episode length); a swing-up knob away from neutral on another env than the swing-up, or ``start_scale`` on
    another start than the hard one, is a one-line ``ConfigError``."""
    fitness = Fitness(**{k: getattr(cfg.train, k) for k in KNOBS}, episode_steps=cfg.train_steps)
    shaped = fitness.shaped()
    swingup_only = [k for k in shaped if k not in ANY_ENV]
    if swingup_only and not is_swingup(cfg.env.name):
        key = swingup_only[0]
        raise ConfigError(f"config key 'train.{key}' shapes the swing-up's fitness only; {cfg.env.name} needs "
                          f"{_shown(getattr(_PAPER, key))}, got {shaped[key]}")
    if "start_scale" in shaped and cfg.env.start != "hard":
        raise ConfigError(f"config key 'train.start_scale' scales the hard start only; env.start is "
                          f"{cfg.env.start!r}, so it needs {_shown(_PAPER.start_scale)}, got {fitness.start_scale}")
    return fitness


class FitnessWrapper(_Wrapper):
    """The bare swing-up (:class:`CartPoleSwingUp`), or any env with ``alive_bonus`` alone, with a shaped
    :class:`Fitness`; the state is the env's."""

    def __init__(self, env: CartPoleSwingUp | environment.Environment, fitness: Fitness) -> None:
        super().__init__(env)
        self.fitness = fitness

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """The env's start; the hard one with its ranges scaled by ``start_scale`` around hanging at rest."""
        s = self.fitness.start_scale
        if s == 1.0 or params.upright or not params.hard:
            return self.env.reset_env(key, params)
        lo, hi = hard_start_range(params)
        mid = jnp.array(HANGING, jnp.float32)
        state = start_state(jax.random.uniform(key, (4,), jnp.float32, mid + s * (lo - mid), mid + s * (hi - mid)))
        return self.env.get_obs(state), state

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams) -> tuple:
        """The env's step, its reward and termination shaped on the post-step state."""
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        f = self.fitness
        if f.reward_power != 1.0 or f.cart_only_steps:
            reward = self.reward(state, params)
        if f.fall_after is not None:
            terminated = self.is_terminated(state, params)
            info = {**info, "discount": self.discount(state, params)}
        if f.fall_credit:  # the fall ended it with the cart on the track: credit for the steps left
            fell = terminated & ~self.env.off_track(state, params)
            left = (f.episode_steps - state.time).astype(jnp.float32)
            reward = jnp.where(fell, reward + f.fall_credit * left, reward)
        if f.alive_bonus:
            reward = reward + f.alive_bonus
        return obs, state, reward, terminated, info

    def reward(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The pole factor to the power ``reward_power`` times the cart factor; the cart factor alone in the
        first ``cart_only_steps`` steps (``state.time`` counts the step just taken)."""
        pole = self.env.pole_factor(state)
        if self.fitness.reward_power != 1.0:
            pole = pole ** self.fitness.reward_power
        if self.fitness.cart_only_steps:
            pole = jnp.where(state.time <= self.fitness.cart_only_steps, 1.0, pole)
        return (pole * self.env.cart_factor(state, params)).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The env's ending; with ``fall_after`` N, also the pole below horizontal after N steps."""
        ended = self.env.is_terminated(state, params)
        if self.fitness.fall_after is None:
            return ended
        return ended | ((state.time > self.fitness.fall_after) & (jnp.cos(state.theta) < 0.0))
