"""A linear-quadratic regulator (LQR) that balances the upright cart-pole, and a teacher built on it.

The attention neurons trained by ES alone swing the pole up but do not balance it: they let it fall over
and swing it up again (see ``pinn_jax.study.diagnose``). :class:`CatchWithLQR` is a teacher for
``pinn_jax.tools.distill`` that plays a base policy (e.g. ``pretrained:cartpole_pi``) until the pole is near the
top and lets an LQR balancer act there; a student distilled from it learns both.

The gain comes from the environment itself: one Euler step is linearised at the upright rest state with
``jax.jacobian`` through gymnax's transition gradients, and the discrete Riccati equation is solved with
SciPy. Policies here read the unshuffled observation ``[x, ẋ, cos θ, sin θ, θ̇]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from pinn_jax.envs import CartPoleSwingUp, EnvParams, EnvState
from pinn_jax.policies import Policy, PolicyBase

DEFAULT_Q = (1.0, 1.0, 10.0, 1.0)  # state cost on (x, ẋ, θ, θ̇)
DEFAULT_R = 1.0  # cost on the action (force / force_mag)


def linearise(env_params: EnvParams = EnvParams()) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` of one environment step, ``s' ≈ A s + B a``, at the upright rest state.

    ``s = (x, ẋ, θ, θ̇)`` with θ = 0 upright, ``a`` the action in [-1, 1].
    """
    env = CartPoleSwingUp().with_transition_gradients()

    def step(s: jax.Array, a: jax.Array) -> jax.Array:
        state = EnvState(x=s[0], x_dot=s[1], theta=s[2], theta_dot=s[3], time=jnp.array(0, jnp.int32))
        _, nxt, *_ = env.step_env(jax.random.PRNGKey(0), state, a, env_params)
        return jnp.stack([nxt.x, nxt.x_dot, nxt.theta, nxt.theta_dot])

    s0, a0 = jnp.zeros(4, jnp.float32), jnp.zeros((), jnp.float32)
    a_mat = np.asarray(jax.jacobian(step, 0)(s0, a0), np.float64)
    b_mat = np.asarray(jax.jacobian(step, 1)(s0, a0), np.float64).reshape(4, 1)
    return a_mat, b_mat


def lqr_gain(env_params: EnvParams = EnvParams(), q: Sequence[float] = DEFAULT_Q,
             r: float = DEFAULT_R) -> np.ndarray:
    """Gain ``K`` (4,) of the infinite-horizon discrete LQR: the action is ``-K · (x, ẋ, θ, θ̇)``."""
    a_mat, b_mat = linearise(env_params)
    q_mat, r_mat = np.diag(np.asarray(q, np.float64)), np.array([[float(r)]])
    p = scipy.linalg.solve_discrete_are(a_mat, b_mat, q_mat, r_mat)
    return np.linalg.solve(r_mat + b_mat.T @ p @ b_mat, b_mat.T @ p @ a_mat)[0]


def _action(gain: jax.Array, obs: jax.Array) -> jax.Array:
    """``clip(-K s, -1, 1)`` (shape (1,)) with ``s = (x, ẋ, θ, θ̇)`` from the unshuffled observation, θ in (-π, π]."""
    state = jnp.stack([obs[0], obs[1], jnp.arctan2(obs[3], obs[2]), obs[4]])
    return jnp.clip(-(gain @ state), -1.0, 1.0)[None]


@dataclasses.dataclass(frozen=True)
class LQRPolicy(PolicyBase):
    """The LQR balancer as a (parameter-free) policy: ``a = clip(-K s, -1, 1)``."""

    gain: tuple[float, ...]
    act_dim: int = 1
    kind = "lqr"

    def init(self, key: jax.Array, obs_dim: int | None = None) -> dict:
        return {}

    def initial_state(self, obs_dim: int) -> tuple:
        return ()

    def prepare(self, params: Any) -> jax.Array:
        return jnp.asarray(self.gain, jnp.float32)

    def step(self, prepared: jax.Array, state: tuple, obs: jax.Array, prev_action: jax.Array):
        return state, _action(prepared, obs), {}

    def num_params(self, obs_dim: int | None = None) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class CatchWithLQR(PolicyBase):
    """``base`` everywhere except near the top (``cos θ > threshold``), where the LQR balancer acts.

    Takes the base policy's parameters; the base keeps its recurrent state up to date at every step.
    """

    base: Policy
    gain: tuple[float, ...]
    threshold: float = 0.8
    act_dim: int = 1
    kind = "catch_with_lqr"

    def init(self, key: jax.Array, obs_dim: int) -> Any:
        return self.base.init(key, obs_dim)

    def initial_state(self, obs_dim: int) -> Any:
        return self.base.initial_state(obs_dim)

    def prepare(self, params: Any) -> tuple[Any, jax.Array]:
        return self.base.prepare(params), jnp.asarray(self.gain, jnp.float32)

    def step(self, prepared: tuple[Any, jax.Array], state: Any, obs: jax.Array, prev_action: jax.Array):
        base_prepared, gain = prepared
        state, action, aux = self.base.step(base_prepared, state, obs, prev_action)
        return state, jnp.where(obs[2] > self.threshold, _action(gain, obs), action), aux

    def num_params(self, obs_dim: int) -> int:
        return self.base.num_params(obs_dim)
