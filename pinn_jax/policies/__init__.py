"""Policies: permutation-invariant AttentionNeuron and its vision version on image patches, plus MLP / linear
baselines.

All policies follow :class:`pinn_jax.policies.base.Policy`. ``REGISTRY`` is the one list of policy
names: each maps to its constructor and the ``policy.*`` config fields it takes; build one by name
with :func:`make_policy`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from .attention_neuron import AttentionNeuronPolicy, LSTMState
from .base import Policy, PolicyBase, count_params, flatten_params
from .mlp import MLPPolicy, linear_policy
from .official_format import load_official, to_official
from .vision_attention import VisionAttentionPolicy

__all__ = [
    "Policy", "PolicyBase", "AttentionNeuronPolicy", "LSTMState", "MLPPolicy", "VisionAttentionPolicy", "linear_policy",
    "make_policy", "PolicySpec", "REGISTRY", "POLICY_NAMES", "flatten_params", "count_params", "load_official",
    "to_official",
]


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """How to build a registered policy: its constructor and the ``policy.*`` config fields it takes."""

    build: Callable[..., Policy]
    fields: tuple[str, ...]


def _linear(hidden: tuple[int, ...] = (), **kwargs) -> MLPPolicy:
    if tuple(hidden):
        raise ValueError(f"the 'linear' policy has no hidden layers, got hidden={tuple(hidden)}")
    return MLPPolicy(hidden=(), **kwargs)


REGISTRY: dict[str, PolicySpec] = {
    "attention_neuron": PolicySpec(AttentionNeuronPolicy,
                                   ("hidden_dim", "msg_dim", "pos_em_dim", "scale", "attention_gain", "action_gain",
                                    "head_layers", "init_forget_bias")),
    "mlp": PolicySpec(MLPPolicy, ("hidden",)),
    "linear": PolicySpec(_linear, ()),
    "vision_attention": PolicySpec(VisionAttentionPolicy,
                                   ("frames", "grid", "query_dim", "key_dim", "value_dim", "head_hidden",
                                    "key_frame")),
}
POLICY_NAMES = tuple(REGISTRY)


def make_policy(name: str, **kwargs) -> Policy:
    """Build a registered policy by name (``attention_neuron``, ``mlp``, ``linear``, ``vision_attention``);
    ``kwargs`` are its dataclass fields."""
    spec = REGISTRY.get(str(name).strip().lower().replace("-", "_"))
    if spec is None:
        raise ValueError(f"unknown policy {name!r}; valid names: {', '.join(POLICY_NAMES)}")
    return spec.build(**kwargs)
