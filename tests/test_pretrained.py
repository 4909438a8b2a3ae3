"""Shipped agents: they load, match their configs, and still score (catches env/policy regressions)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinn_jax import pretrained
from pinn_jax.config import EnvConfig
from pinn_jax.envs import ObsTransform
from pinn_jax.rollout import build_env, episode

NAMES = pretrained.available()


def test_some_models_are_shipped():
    assert "cartpole_mlp" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_scores_above_its_threshold(name):
    policy, params, cfg = pretrained.load(name)
    meta = pretrained.info(name)
    check = meta["check"]
    assert ravel_pytree(params)[0].size == meta["num_params"]
    env, env_params = build_env(EnvConfig(start=check["start"]), ObsTransform(shuffle=check["shuffle"]))
    run = jax.jit(jax.vmap(lambda k: episode(policy, env, env_params, params, k, 1000).ret))
    keys = jax.random.split(jax.random.PRNGKey(check["seed"]), check["episodes"])
    returns = np.asarray(run(keys))
    assert returns.mean() > check["min_mean"], (name, returns.mean())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no pretrained model 'nope' \\(available: "):
        pretrained.load("nope")
