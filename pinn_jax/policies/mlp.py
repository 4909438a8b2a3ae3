"""Feed-forward baselines: MLP (tanh hidden layers, tanh output) and linear.

These are NOT permutation invariant and take a fixed number of inputs.

Parameter pytree (from a ``flax.linen`` module's ``init``)::

    {"params": {"hidden_0": {"kernel": (obs_dim, h0), "bias": (h0,)},
                "hidden_1": {...}, ...,
                "out": {"kernel": (h_last, act_dim), "bias": (act_dim,)}}}

Parameter counts on 5 inputs with act_dim=1: hidden=(16,) -> 113,
hidden=(16, 16) -> 385, hidden=() (linear) -> 6.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pinn_jax.policies.base import PolicyBase, head_output

__all__ = ["MLPPolicy", "MLPNet", "linear_policy"]


class MLPNet(nn.Module):
    """tanh MLP: ``len(hidden)`` tanh Dense layers then a Dense output (the head's pre-activations)."""

    hidden: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = jnp.tanh(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(self.act_dim, name="out")(x)


@dataclasses.dataclass(frozen=True)
class MLPPolicy(PolicyBase):
    """MLP / linear policy with a fixed number of inputs.

    Parameter count: ``sum((fan_in + 1) * fan_out)`` over layers, i.e. on
    5 inputs with act_dim=1: **113** for hidden=(16,), **385** for
    hidden=(16, 16), **6** for hidden=() (linear policy).

    Attributes:
        act_dim: action size.
        hidden: widths of the tanh hidden layers (``()`` = linear policy).
        obs_dim: number of inputs.  ``None`` (default) means "fixed by the
            ``obs_dim`` given to ``init``"; if set, ``init`` with another
            ``obs_dim`` raises ``ValueError``.  Either way ``step`` checks the
            observation size against the parameters (at trace time).
    """

    act_dim: int = 1
    hidden: tuple[int, ...] = (16,)
    obs_dim: int | None = None
    discrete: bool = False  # act_dim logits, the action their argmax (see policies.base.head_output)

    def __post_init__(self):
        # Accept lists (e.g. from YAML) but keep the dataclass hashable.
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if self.obs_dim is not None:
            object.__setattr__(self, "obs_dim", int(self.obs_dim))

    @property
    def kind(self) -> str:
        return "mlp" if self.hidden else "linear"

    def input_size(self, params: dict) -> int:
        """The number of features the parameters' first layer takes."""
        return self.expected_obs_dim(params)

    @property
    def net(self) -> MLPNet:
        return MLPNet(hidden=self.hidden, act_dim=self.act_dim)

    def _resolve_obs_dim(self, obs_dim: int | None) -> int:
        if obs_dim is None:
            if self.obs_dim is None:
                raise ValueError("MLPPolicy needs obs_dim (none configured and none given)")
            return self.obs_dim
        obs_dim = int(obs_dim)
        if self.obs_dim is not None and obs_dim != self.obs_dim:
            raise ValueError(f"MLPPolicy was configured for obs_dim={self.obs_dim} but got obs_dim={obs_dim}")
        return obs_dim

    def num_params(self, obs_dim: int | None = None) -> int:
        sizes = (self._resolve_obs_dim(obs_dim), *self.hidden, self.act_dim)
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))

    def init(self, key: jax.Array, obs_dim: int | None = None) -> dict:
        """Flax default init (lecun-normal kernels, zero biases)."""
        n = self._resolve_obs_dim(obs_dim)
        return self.net.init(key, jnp.zeros((n,), jnp.float32))

    def initial_state(self, obs_dim: int | None = None) -> tuple:
        return ()

    def prepare(self, params: dict) -> dict:
        return params

    @staticmethod
    def expected_obs_dim(params: dict) -> int:
        p = params["params"]
        first = "hidden_0" if "hidden_0" in p else "out"
        return int(p[first]["kernel"].shape[0])

    def step(self, prepared: dict, state: tuple, obs: jax.Array, prev_action: jax.Array):
        """Returns ``((), action (act_dim,), {})``; ``prev_action`` is ignored."""
        expected = self.expected_obs_dim(prepared)
        if obs.ndim != 1 or obs.shape[0] != expected:
            raise ValueError(
                f"MLPPolicy expects an observation of size {expected}, received shape {tuple(obs.shape)}"
            )
        action = head_output(self.net.apply(prepared, jnp.asarray(obs, jnp.float32)), self.discrete)
        return state, action, {}


def linear_policy(act_dim: int = 1, obs_dim: int | None = None) -> MLPPolicy:
    """Linear policy ``tanh(W o + b)`` (6 params on 5 inputs with act_dim=1)."""
    return MLPPolicy(act_dim=act_dim, hidden=(), obs_dim=obs_dim)
