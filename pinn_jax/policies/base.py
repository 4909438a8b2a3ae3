"""Common policy interface and helpers.

Every policy in :mod:`pinn_jax.policies` is a frozen, hashable dataclass (so it can be passed to
``jax.jit`` as a static argument) that exposes pure functions over explicit parameter / state pytrees.
The training loop vmaps ``step`` over a population of parameter sets and over rollouts inside a
``lax.scan`` over time, so ``step`` must be pure and cheap; parameter-only work belongs in ``prepare``,
called once per rollout outside the time loop.

Fitness evaluation steps all rollouts of one member in lockstep through the batch interface
(``initial_batch_state`` / ``step_batch`` with observations on axis ``batch_obs_axis``).
:class:`PolicyBase` supplies it by vmapping ``step``; a policy with a faster lockstep path (the
attention neuron) overrides it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["Params", "State", "Prepared", "Aux", "Policy", "PolicyBase", "head_output", "flatten_params",
           "count_params"]

Params = Any  # parameter pytree (nested dict of float32 arrays)
State = Any  # recurrent state pytree for ONE agent (may be the empty tuple)
Prepared = Any  # parameter-derived pytree consumed by ``step``
Aux = dict  # diagnostics returned by ``step`` (e.g. attention matrix)


@runtime_checkable
class Policy(Protocol):
    """Structural interface shared by all policies.

    Attributes:
        act_dim: size of the action vector; actions lie in ``[-1, 1]`` (one-hot vectors for a discrete
            action space, see :func:`head_output`).
        kind: registry name of the policy (``attention_neuron``, ``mlp``, ``linear``, ...).
        batch_obs_axis: the batch axis of ``step_batch``'s observations (0: ``(B, N)``, 1: ``(N, B)``).
    """

    act_dim: int

    @property
    def kind(self) -> str: ...

    @property
    def batch_obs_axis(self) -> int: ...

    def init(self, key: jax.Array, obs_dim: int) -> Params:
        """Return a freshly initialised parameter pytree."""
        ...

    def initial_state(self, obs_dim: int) -> State:
        """Return the recurrent state of ONE agent at episode start."""
        ...

    def search_start(self, template: Params) -> Params:
        """The ``strategy.init_mean: zeros`` start of a search, shaped like ``template``."""
        ...

    def prepare(self, params: Params) -> Prepared:
        """Parameter-only precomputation, done once per rollout."""
        ...

    def step(self, prepared: Prepared, state: State, obs: jax.Array,
             prev_action: jax.Array) -> tuple[State, jax.Array, dict]:
        """One control step: ``(new_state, action (act_dim,), aux)``."""
        ...

    def input_size(self, params: Params) -> int | None:
        """The fixed number of observation features ``params`` take, or None for any number."""
        ...

    def initial_batch_state(self, obs_dim: int, batch: int) -> Any:
        """State of ``batch`` episodes stepped in lockstep by ``step_batch``."""
        ...

    def step_batch(self, prepared: Prepared, state: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        """One lockstep step of ``batch`` episodes: ``(new_state, actions (batch, act_dim))``; the previous
        actions are kept in the state."""
        ...

    def num_params(self, obs_dim: int) -> int:
        """Number of scalar parameters for observations of size ``obs_dim``."""
        ...


class PolicyBase:
    """Defaults for the batch interface and ``input_size``: ``step`` vmapped over a batch ``(B, N)``, the
    previous actions carried in the state; any number of features. ``takes_patches``: the policy observes an
    image env as ``(patches, features)`` (:mod:`pinn_jax.envs.patches`, its ``frames`` frames per patch) rather
    than as one vector."""

    batch_obs_axis = 0
    takes_patches = False

    def input_size(self, params: Params) -> int | None:
        return None

    def search_start(self, template: Params) -> Params:
        return jax.tree.map(jnp.zeros_like, template)

    def initial_batch_state(self, obs_dim: int, batch: int) -> tuple[Any, jax.Array]:
        one = self.initial_state(obs_dim)  # type: ignore[attr-defined]
        pstate = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *jnp.shape(x))), one)
        return pstate, jnp.zeros((batch, self.act_dim), jnp.float32)  # type: ignore[attr-defined]

    def step_batch(self, prepared: Prepared, state: tuple[Any, jax.Array], obs: jax.Array) -> tuple[Any, jax.Array]:
        pstate, prev = state
        pstate, act, _ = jax.vmap(self.step, in_axes=(None, 0, 0, 0))(prepared, pstate, obs, prev)  # type: ignore[attr-defined]
        return (pstate, act), act


def head_output(pre: jax.Array, discrete: bool, axis: int = -1) -> jax.Array:
    """A policy's action vector from its head's pre-activations: ``tanh`` (continuous), or the one-hot of
    the largest (``discrete``: the env takes its index, the policy sees it as its previous action)."""
    if not discrete:
        return jnp.tanh(pre)
    return jax.nn.one_hot(jnp.argmax(pre, axis=axis), pre.shape[axis], axis=axis, dtype=jnp.float32)


def flatten_params(params: Params) -> tuple[jax.Array, Callable[[jax.Array], Params]]:
    """Flatten a parameter pytree into one 1-D vector (:func:`jax.flatten_util.ravel_pytree`):
    ``(flat, unflatten)``, where ``unflatten(flat)`` rebuilds the pytree."""
    flat, unflatten = ravel_pytree(params)
    return flat, unflatten


def count_params(params: Params) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))
