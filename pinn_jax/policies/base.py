"""Common policy interface and helpers.

Every policy in :mod:`pinn_jax.policies` is a frozen, hashable dataclass (so it
can be passed to ``jax.jit`` as a static argument) that exposes pure functions
over explicit parameter / state pytrees.  The training loop vmaps ``step`` over
a population of parameter sets and over rollouts inside a ``lax.scan`` over
time, so ``step`` must be pure and cheap; parameter-only work belongs in
``prepare`` which is called once per rollout outside the time loop.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = [
    "Params",
    "State",
    "Prepared",
    "Aux",
    "Policy",
    "flatten_params",
    "count_params",
]

Params = Any  # parameter pytree (nested dict of float32 arrays)
State = Any  # recurrent state pytree for ONE agent (may be the empty tuple)
Prepared = Any  # parameter-derived pytree consumed by ``step``
Aux = dict  # diagnostics returned by ``step`` (e.g. attention matrix)


@runtime_checkable
class Policy(Protocol):
    """Structural interface shared by all policies.

    Attributes:
        act_dim: size of the action vector; actions lie in ``[-1, 1]``.
    """

    act_dim: int

    def init(self, key: jax.Array, obs_dim: int) -> Params:
        """Return a freshly initialised parameter pytree."""
        ...

    def initial_state(self, obs_dim: int) -> State:
        """Return the recurrent state of ONE agent at episode start."""
        ...

    def prepare(self, params: Params) -> Prepared:
        """Parameter-only precomputation, done once per rollout."""
        ...

    def step(
        self,
        prepared: Prepared,
        state: State,
        obs: jax.Array,
        prev_action: jax.Array,
    ) -> tuple[State, jax.Array, dict]:
        """One control step: ``(new_state, action (act_dim,), aux)``."""
        ...

    def num_params(self, obs_dim: int) -> int:
        """Number of scalar parameters for observations of size ``obs_dim``."""
        ...


def flatten_params(params: Params) -> tuple[jax.Array, Callable[[jax.Array], Params]]:
    """Flatten a parameter pytree into one 1-D vector.

    Thin wrapper around :func:`jax.flatten_util.ravel_pytree`; returns
    ``(flat, unflatten)`` where ``unflatten(flat)`` rebuilds a pytree with the
    original structure, shapes and dtypes.
    """
    flat, unflatten = ravel_pytree(params)
    return flat, unflatten


def count_params(params: Params) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))
