"""pinn_jax: permutation-invariant neural networks (the attention neuron) for RL, trained with evolution strategies
in JAX. See README.md for the tour.

The Python API, loaded on first use (``import pinn_jax`` itself loads nothing else and does not start JAX, so
``jax.distributed`` can still be initialised by :func:`fit`, which is :func:`pinn_jax.train.train`: the name
``pinn_jax.train`` is the training command's module)::

    cfg = pinn_jax.load_config("quick", ["train.generations=20"])      # a shipped config or a YAML path
    tr, state, rows = pinn_jax.fit(cfg, env=MyEnv(), run_dir="runs/mine")   # any gymnax env or Policy object
    model = pinn_jax.load_model("pretrained:cartpole_pi_catch")        # or a run directory, official, FILE.npz
    report = pinn_jax.evaluate([model], [pinn_jax.condition("shuffle")], episodes=100)
    env, env_params = pinn_jax.make_env("CartPoleSwingUp-v0")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute): the whole API, one line each
_API: dict[str, tuple[str, str]] = {
    "load_config": ("pinn_jax.config", "load"),
    "Config": ("pinn_jax.config", "Config"),
    "fit": ("pinn_jax.train", "train"),
    "load_model": ("pinn_jax.models", "load_model"),
    "Model": ("pinn_jax.models", "Model"),
    "evaluate": ("pinn_jax.study.evaluate", "evaluate"),
    "condition": ("pinn_jax.study.conditions", "parse_condition"),
    "make_env": ("pinn_jax.envs", "make"),
    "Policy": ("pinn_jax.policies", "Policy"),
    "UserError": ("pinn_jax.errors", "UserError"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Load an API name's module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'pinn_jax' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
