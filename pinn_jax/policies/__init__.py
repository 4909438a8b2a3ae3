"""Policies: permutation-invariant AttentionNeuron plus MLP / linear baselines.

All policies follow :class:`pinn_jax.policies.base.Policy`.  Build one by name
with :func:`make_policy`.
"""

from __future__ import annotations

from .attention_neuron import (
    AttentionNeuronPolicy,
    LSTMState,
    load_official,
    official_weights_path,
    to_official,
)
from .base import Policy, count_params, flatten_params
from .mlp import MLPPolicy, linear_policy

__all__ = [
    "Policy",
    "AttentionNeuronPolicy",
    "LSTMState",
    "MLPPolicy",
    "linear_policy",
    "make_policy",
    "POLICY_NAMES",
    "flatten_params",
    "count_params",
    "load_official",
    "official_weights_path",
    "to_official",
]

POLICY_NAMES = ("attention_neuron", "mlp", "linear")


def make_policy(name: str, **kwargs) -> Policy:
    """Build a policy by name: ``"attention_neuron"``, ``"mlp"`` or ``"linear"``.

    ``kwargs`` are the dataclass fields of the policy (``"linear"`` is
    ``MLPPolicy`` with ``hidden=()`` and does not accept non-empty ``hidden``).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key == "attention_neuron":
        return AttentionNeuronPolicy(**kwargs)
    if key == "mlp":
        return MLPPolicy(**kwargs)
    if key == "linear":
        hidden = tuple(kwargs.pop("hidden", ()))
        if hidden:
            raise ValueError(f"the 'linear' policy has no hidden layers, got hidden={hidden}")
        return MLPPolicy(hidden=(), **kwargs)
    raise ValueError(f"unknown policy {name!r}; valid names: {', '.join(POLICY_NAMES)}")
