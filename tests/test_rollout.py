"""Fitness evaluation: the lockstep path used in training equals single recorded episodes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.config import EnvConfig
from pinn_jax.envs import ObsTransform
from pinn_jax.experiment import build_env
from pinn_jax.policies import make_policy
from pinn_jax.rollout import episode, evaluate_population, rollout_keys


@pytest.mark.parametrize("name", ["attention_neuron", "mlp"])
@pytest.mark.parametrize("transform", [ObsTransform(), ObsTransform(shuffle=True, shuffle_every=7),
                                       ObsTransform(shuffle=True, num_noise=3)])
def test_lockstep_evaluation_matches_single_episodes(name, transform):
    """``evaluate_population`` (all rollouts of a member in one time loop) = ``episode`` per key."""
    policy = make_policy(name, **({"hidden": (16,)} if name == "mlp" else {}))
    env, env_params = build_env(EnvConfig(start="hard", max_steps=25), transform)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    pop = jax.vmap(lambda k: policy.init(k, transform.out_dim(5)))(keys)
    key, steps = jax.random.PRNGKey(7), 25
    fast = jax.jit(lambda p: evaluate_population(policy, env, env_params, p, key, 4, steps))(pop)
    ep_keys = rollout_keys(key, 3, 4, True)
    one = lambda p, k: episode(policy, env, env_params, p, k, steps).ret  # noqa: E731
    ref = jax.jit(jax.vmap(lambda p: jax.vmap(lambda k: one(p, k))(ep_keys)))(pop)
    assert fast.shape == (3, 4)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-4)
    assert float(jnp.ptp(ref)) > 0.1  # different members and starts really differ
