"""Environments: cart-pole swing-up, gymnax pass-through, obs wrappers and image patches."""

from __future__ import annotations

from typing import Any

import gymnax

from pinn_jax.envs.cartpole_swingup import CartPoleSwingUp, EnvParams, EnvState, accelerations, render
from pinn_jax.envs.patches import Patches, PatchState, PatchWrapper, observed_cells, patchify, unpatchify
from pinn_jax.envs.wrappers import (
    ActionSpec,
    ActionWrapper,
    ObsTransform,
    ObsTransformWrapper,
    TransformState,
    WrappedState,
    transform_reset,
    transform_step,
)
from pinn_jax.errors import ConfigError

# name -> the start distribution the name fixes (None: any; the hard start unless the params say otherwise)
CARTPOLE_NAMES: dict[str, str | None] = {
    "CartPoleSwingUp-v0": None,
    "CartPoleSwingUp-hard": "hard",
    "CartPoleSwingUp-easy": "easy",
}


# gymnax ids whose observations are not flat feature vectors, which pinn_jax's policies cannot take: ``make`` builds
# them, ``names`` does not offer them. What each one observes:
NOT_VECTOR: dict[str, str] = {  # gymnax ids no pinn_jax policy takes: neither feature vectors nor (H, W, C) frames
    "Catch-bsuite": "arrays of shape (10, 5)", "DeepSea-bsuite": "arrays of shape (8, 8)",
    "SimpleBandit-bsuite": "arrays of shape (1, 1)", "MNISTBandit-bsuite": "MNIST images (a data set it downloads)",
    "FrozenLake-misc": "a bare position index, shape ()",
}


def names() -> list[str]:
    """The environment names a config may use: the swing-up names, then gymnax's vector-observation ids and its image
    envs (MinAtar, Pong-misc: with ``env.patch_size``)."""
    return [*CARTPOLE_NAMES, *(n for n in gymnax.registered_envs if n not in NOT_VECTOR)]


def is_swingup(name: str) -> bool:
    """Whether ``name`` is one of the cart-pole swing-up environments (``CARTPOLE_NAMES``)."""
    return name in CARTPOLE_NAMES


def label(name: str, start: str, max_steps: int) -> str:
    """How reports name an env setting: ``CartPoleSwingUp-v0, hard start, max 1000 steps``; the start only
    for the swing-up, whose start distribution it is."""
    return f"{name}, {start} start, max {max_steps} steps" if is_swingup(name) else f"{name}, max {max_steps} steps"


def same_task(a: str, b: str) -> bool:
    """Whether two env names are the same task (every swing-up name is one task with two starts)."""
    return a == b or (is_swingup(a) and is_swingup(b))


def make(name: str, **param_overrides: Any) -> tuple[Any, Any]:
    """Build ``(env, env_params)``; keyword args replace fields of the params.

    Cart-pole swing-up names are listed in ``CARTPOLE_NAMES``; any other name
    is passed to ``gymnax.make``.
    """
    if is_swingup(name):
        env, params = CartPoleSwingUp(), EnvParams(hard=CARTPOLE_NAMES[name] != "easy")
    elif name in gymnax.registered_envs:
        env, params = gymnax.make(name)
    else:
        raise ConfigError(f"unknown environment {name!r}: use one of {', '.join(names())}")
    return env, params.replace(**param_overrides) if param_overrides else params


__all__ = [
    "ActionSpec", "ActionWrapper", "CARTPOLE_NAMES", "NOT_VECTOR", "CartPoleSwingUp", "EnvParams", "EnvState",
    "ObsTransform", "ObsTransformWrapper", "Patches", "PatchState", "PatchWrapper", "TransformState", "WrappedState",
    "accelerations", "is_swingup", "label", "make", "names", "observed_cells", "patchify", "same_task", "render",
    "transform_reset", "transform_step", "unpatchify",
]
