"""Cart-pole swing-up as a gymnax environment (Tang & Ha 2021 physics).

The pole starts hanging down (θ = π; θ = 0 is upright) and must be swung up
and balanced while the cart stays on a track |x| <= 2.4.  The dynamics are a
uniform rod of length ``l`` (centre of mass at l/2) on a cart with viscous
friction ``b``, integrated with forward Euler (positions use the old
velocities).  Reward per step, on the post-step state, is
``(cos θ + 1)/2 · cos(x / 2.4 · π/2)`` (the pole factor times the cart factor);
it is also paid on the terminal step, where it can be slightly negative.
Episodes terminate when |x| > 2.4 and are truncated after 1000 steps.  This is
the paper's task, and every score pinn_jax reports is on it; the training-only
fitness shaping (``train.reward_power``, ``fall_after``, ...) is a wrapper,
:mod:`pinn_jax.envs.fitness`.

Three start distributions, chosen by the static fields ``EnvParams.hard`` and ``upright``:

* ``hard=True`` (default; the paper's ``CartPoleSwingUpHarder``):
  x ~ U(-2.4, 2.4), ẋ ~ U(-10, 10), θ = π + U(-π/2, π/2), θ̇ ~ U(-10, 10).
  This is very harsh: with |ẋ| up to 10 near the track edge many episodes are
  lost within the first steps whatever the policy does.  The paper's best
  agent averages about 470 with a standard deviation of about 420 over 1000
  episodes.
* ``hard=False`` (easy): (x, ẋ, θ, θ̇) ~ Normal((0, 0, π, 0), 0.2).
* ``upright=True`` (a balance task, over ``hard``): x ~ U(-1.5, 1.5),
  ẋ ~ U(-2, 2), θ ~ U(-0.5, 0.5), θ̇ ~ U(-2, 2).

Observation (float32): ``[x, ẋ, cos θ, sin θ, θ̇]``.  Action: one float
(shape () or (1,)), clipped to [-1, 1]; force F = 10·a.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

HANGING = (0.0, 0.0, float(np.pi), 0.0)  # (x, ẋ, θ, θ̇) hanging at rest: the easy start's mean


@struct.dataclass
class EnvState(environment.EnvState):
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    gravity: float = 9.82
    masscart: float = 0.5
    masspole: float = 0.5
    length: float = 0.6  # full length l of the uniform pole
    force_mag: float = 10.0
    friction: float = 0.1
    dt: float = 0.01
    x_threshold: float = 2.4
    max_steps_in_episode: int = 1000
    hard: bool = struct.field(pytree_node=False, default=True)
    upright: bool = struct.field(pytree_node=False, default=False)  # the balance task's start (over ``hard``)


def accelerations(
    x_dot: jax.Array, theta: jax.Array, theta_dot: jax.Array, force: jax.Array,
    params: EnvParams,
) -> tuple[jax.Array, jax.Array]:
    """Cart and pole accelerations (ẍ, θ̈) of the swing-up dynamics."""
    s, c = jnp.sin(theta), jnp.cos(theta)
    m_p, l, g, b = params.masspole, params.length, params.gravity, params.friction
    total_m = params.masscart + m_p
    m_p_l = m_p * l
    x_acc = (
        -2.0 * m_p_l * theta_dot**2 * s + 3.0 * m_p * g * s * c
        + 4.0 * force - 4.0 * b * x_dot
    ) / (4.0 * total_m - 3.0 * m_p * c**2)
    theta_acc = (
        -3.0 * m_p_l * theta_dot**2 * s * c + 6.0 * total_m * g * s
        + 6.0 * (force - b * x_dot) * c
    ) / (4.0 * l * total_m - 3.0 * m_p_l * c**2)
    return x_acc, theta_acc


def hard_start_range(params: EnvParams) -> tuple[jax.Array, jax.Array]:
    """The hard start's bounds (low, high) of (x, ẋ, θ, θ̇)."""
    lo = jnp.array([-params.x_threshold, -10.0, jnp.pi / 2, -10.0], jnp.float32)
    hi = jnp.array([params.x_threshold, 10.0, 1.5 * jnp.pi, 10.0], jnp.float32)
    return lo, hi


def start_state(v: jax.Array) -> EnvState:
    """The state at step 0 from a vector (x, ẋ, θ, θ̇)."""
    return EnvState(x=v[0], x_dot=v[1], theta=v[2], theta_dot=v[3], time=jnp.array(0, jnp.int32))


class CartPoleSwingUp(environment.Environment[EnvState, EnvParams]):
    """JAX cart-pole swing-up (continuous action in [-1, 1])."""

    _supports_transition_gradients = True

    def __init__(self) -> None:
        super().__init__()
        self.obs_shape = (5,)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(
        self, key: jax.Array, state: EnvState, action: Any, params: EnvParams,
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """One Euler step; reward and termination on the post-step state."""
        del key
        a = jnp.clip(jnp.asarray(action, jnp.float32).reshape(()), -1.0, 1.0)
        force = params.force_mag * a
        x_acc, theta_acc = accelerations(
            state.x_dot, state.theta, state.theta_dot, force, params)
        dt = params.dt
        f32 = jnp.float32
        state = EnvState(
            x=jnp.asarray(state.x + state.x_dot * dt, f32),
            theta=jnp.asarray(state.theta + state.theta_dot * dt, f32),
            x_dot=jnp.asarray(state.x_dot + x_acc * dt, f32),
            theta_dot=jnp.asarray(state.theta_dot + theta_acc * dt, f32),
            time=jnp.asarray(state.time + 1, jnp.int32),
        )
        reward = self.reward(state, params)
        terminated = self.is_terminated(state, params)
        obs, state = self._apply_transition_gradient_policy(
            self.get_obs(state), state)
        return obs, state, reward, terminated, {
            "discount": self.discount(state, params)}

    def reset_env(
        self, key: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState]:
        """Sample a start state (upright, hard or easy distribution, see module doc)."""
        if params.upright:
            hi = jnp.array([1.5, 2.0, 0.5, 2.0], jnp.float32)
            v = jax.random.uniform(key, (4,), jnp.float32, -hi, hi)
        elif params.hard:
            v = jax.random.uniform(key, (4,), jnp.float32, *hard_start_range(params))
        else:
            v = jnp.array(HANGING, jnp.float32) + 0.2 * jax.random.normal(key, (4,), jnp.float32)
        state = start_state(v)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params: Any = None, key: Any = None
                ) -> jax.Array:
        return jnp.stack([
            state.x, state.x_dot, jnp.cos(state.theta), jnp.sin(state.theta),
            state.theta_dot,
        ]).astype(jnp.float32)

    @staticmethod
    def pole_factor(state: EnvState) -> jax.Array:
        """(cos θ + 1)/2: 1 upright, 0 hanging down."""
        return (jnp.cos(state.theta) + 1.0) / 2.0

    @staticmethod
    def cart_factor(state: EnvState, params: EnvParams) -> jax.Array:
        """cos(x / x_threshold · π/2): 1 at the centre, 0 at the track's ends."""
        return jnp.cos(state.x / params.x_threshold * (jnp.pi / 2.0))

    @staticmethod
    def reward(state: EnvState, params: EnvParams) -> jax.Array:
        """The pole factor times the cart factor."""
        return (CartPoleSwingUp.pole_factor(state) * CartPoleSwingUp.cart_factor(state, params)).astype(jnp.float32)

    @staticmethod
    def off_track(state: EnvState, params: EnvParams) -> jax.Array:
        """The cart has left the track."""
        return jnp.abs(state.x) > params.x_threshold

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The cart left the track."""
        return self.off_track(state, params)

    @property
    def name(self) -> str:
        return "CartPoleSwingUp-v0"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        inf = jnp.finfo(jnp.float32).max
        high = jnp.array([inf, inf, 1.0, 1.0, inf], jnp.float32)
        return spaces.Box(-high, high, shape=(5,), dtype=jnp.float32)


# ----------------------------------------------------------------- rendering
_BG = np.array([255, 255, 255], np.uint8)
_TRACK = np.array([60, 60, 60], np.uint8)
_CART = np.array([40, 90, 200], np.uint8)
_POLE = np.array([200, 120, 60], np.uint8)
_BOB = np.array([120, 40, 40], np.uint8)


def render(state: EnvState, params: EnvParams | None = None,
           width: int = 600, height: int = 400) -> np.ndarray:
    """Draw one (non-batched) state as a uint8 RGB image of shape (H, W, 3).

    World x in [-x_threshold - margin, x_threshold + margin] spans the width;
    the pole tip is at (x - l·sin θ, l·cos θ) relative to the cart pivot
    (θ = 0 upright), matching the sign convention of the dynamics.
    """
    params = EnvParams() if params is None else params
    x = float(np.asarray(state.x))
    theta = float(np.asarray(state.theta))
    l = float(params.length)
    margin = l + 0.3
    span = 2.0 * (params.x_threshold + margin)
    scale = width / span
    img = np.empty((height, width, 3), np.uint8)
    img[:] = _BG
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)

    def px(wx: float) -> float:
        return (wx + span / 2.0) * scale

    track_y = height * 0.5
    img[int(track_y):int(track_y) + max(1, height // 200) + 1, :] = _TRACK
    for edge in (-params.x_threshold, params.x_threshold):  # track limits
        ex = int(round(px(edge)))
        img[int(track_y) - 10:int(track_y), max(ex - 1, 0):ex + 1] = _TRACK

    cw, ch = 0.4 * scale, 0.2 * scale
    cx = px(x)
    cart = (np.abs(xs - cx) <= cw / 2) & (np.abs(ys - track_y) <= ch / 2)
    img[cart] = _CART

    # pole: thick segment from the pivot (cart centre) to the tip
    p0 = np.array([cx, track_y], np.float32)
    p1 = p0 + np.array([-np.sin(theta), -np.cos(theta)], np.float32) * l * scale
    d = p1 - p0
    t = np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / (d @ d + 1e-9),
                0.0, 1.0)
    dist2 = (xs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2
    img[dist2 <= (max(2.0, 0.04 * scale)) ** 2] = _POLE
    img[(xs - p1[0]) ** 2 + (ys - p1[1]) ** 2 <= (max(3.0, 0.07 * scale)) ** 2] = _BOB
    return img
