"""Environments: cart-pole swing-up, gymnax pass-through, obs wrappers and image patches."""

from __future__ import annotations

from typing import Any

import gymnax

from pinn_jax.errors import ConfigError

from pinn_jax.envs.cartpole_swingup import (
    CartPoleSwingUp, EnvParams, EnvState, accelerations, render)
from pinn_jax.envs.wrappers import (
    ActionSpec, ActionWrapper, ObsTransform, ObsTransformWrapper, TransformState, WrappedState,
    transform_reset, transform_step)
from pinn_jax.envs.patches import Patches, PatchState, PatchWrapper, patchify

# name -> the start distribution the name fixes (None: any; the hard start unless the params say otherwise)
CARTPOLE_NAMES: dict[str, str | None] = {
    "CartPoleSwingUp-v0": None,
    "CartPoleSwingUp-hard": "hard",
    "CartPoleSwingUp-easy": "easy",
}


def names() -> list[str]:
    """Every environment name ``make`` takes: the swing-up names, then gymnax's registered ids."""
    return [*CARTPOLE_NAMES, *gymnax.registered_envs]


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
    "ActionSpec", "ActionWrapper", "CARTPOLE_NAMES", "CartPoleSwingUp", "EnvParams", "EnvState",
    "ObsTransform", "ObsTransformWrapper", "Patches", "PatchState", "PatchWrapper", "TransformState", "WrappedState",
    "accelerations", "is_swingup", "label", "make", "names", "patchify", "same_task", "render", "transform_reset",
    "transform_step",
]
