"""Episodes as pure functions: one policy, one environment, ``lax.scan`` over time.

``episode`` runs one episode (optionally recording it). For fitness, ``member_returns`` runs all
rollouts of one member in lockstep (:func:`lockstep_returns`: one ``lax.scan`` over time with the
policy stepping the whole batch at once) and ``evaluate_population`` vmaps that over the
population. Both give the same returns as ``episode`` (same keys, starts and noise; up to float32
rounding). With common random numbers (the official trainer's protocol, the default) every member
sees the same episode starts, permutations and noise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pinn_jax.envs import ObsTransformWrapper
from pinn_jax.policies import Policy


class Episode(NamedTuple):
    """Result of one episode. ``trajectory`` is only filled when recording."""

    ret: jax.Array  # total reward until termination (inclusive)
    length: jax.Array  # number of steps taken until termination
    trajectory: dict[str, Any] | None = None


def episode(policy: Policy, env: ObsTransformWrapper, env_params: Any, params: Any, key: jax.Array,
            num_steps: int, record: bool = False) -> Episode:
    """Run one episode of at most ``num_steps`` steps; the state is frozen once it is done.

    With ``record`` the trajectory (observations, actions, rewards, done flags, env states and
    the policy's aux outputs such as attention weights) is returned, one entry per step.
    """
    prepared = policy.prepare(params)
    key_reset, key_steps = jax.random.split(key)
    obs, env_state = env.reset_env(key_reset, env_params)
    pstate = policy.initial_state(obs.shape[-1])
    act0 = jnp.zeros((policy.act_dim,), jnp.float32)

    def body(carry, t):
        obs, env_state, pstate, act, done, ret, length = carry
        pstate, act, aux = policy.step(prepared, pstate, obs, act)
        obs2, env_state2, reward, terminated, _ = env.step_env(jax.random.fold_in(key_steps, t), env_state,
                                                               act, env_params)
        ret = ret + jnp.where(done, 0.0, reward)
        length = length + jnp.where(done, 0, 1)
        out = None
        if record:
            out = {"obs": obs, "action": act, "reward": jnp.where(done, 0.0, reward), "done": done,
                   "env_state": env_state, "aux": aux}
        new_done = done | terminated | (t + 1 >= num_steps)
        keep = lambda old, new: jax.tree.map(lambda o, n: jnp.where(done, o, n), old, new)  # noqa: E731
        carry = (keep(obs, obs2), keep(env_state, env_state2), pstate, act, new_done, ret, length)
        return carry, out

    init = (obs, env_state, pstate, act0, jnp.array(False), jnp.float32(0.0), jnp.int32(0))
    (_, _, _, _, _, ret, length), traj = jax.lax.scan(body, init, jnp.arange(num_steps))
    return Episode(ret=ret, length=length, trajectory=traj)


def lockstep_returns(policy: Policy, env: ObsTransformWrapper, env_params: Any, params: Any,
                     keys: jax.Array, num_steps: int, unroll: int = 1) -> jax.Array:
    """Returns of one parameter set over episode keys ``(B, 2)``, all episodes in one time loop.

    Same episodes as ``episode`` with each key (reset and per-step keys derived identically, the
    env state frozen once done). The policy steps them with its batch interface, observations on its
    ``batch_obs_axis`` (the attention neuron's ``(N, B)`` rows are contiguous). ``unroll`` is passed to
    ``lax.scan``.
    """
    init_pstate, step, obs_axis = policy.initial_batch_state, policy.step_batch, policy.batch_obs_axis
    prepared = policy.prepare(params)
    split = jax.vmap(jax.random.split)(keys)  # (B, 2, 2): the same split as in ``episode``
    key_reset, key_steps = split[:, 0], split[:, 1]
    obs, env_state = jax.vmap(env.reset_env, in_axes=(0, None), out_axes=(obs_axis, 0))(key_reset, env_params)
    batch = keys.shape[0]

    def env_step(k: jax.Array, t: jax.Array, state: Any, act: jax.Array) -> tuple:
        obs2, state2, reward, terminated, _ = env.step_env(jax.random.fold_in(k, t), state, act, env_params)
        return obs2, state2, reward, terminated

    env_steps = jax.vmap(env_step, in_axes=(0, None, 0, 0), out_axes=(obs_axis, 0, 0, 0))

    def body(carry, t):
        obs, env_state, pstate, done, ret = carry
        pstate, act = step(prepared, pstate, obs)
        obs2, env_state2, reward, terminated = env_steps(key_steps, t, env_state, act)
        ret = ret + jnp.where(done, 0.0, reward)
        new_done = done | terminated | (t + 1 >= num_steps)

        def keep(old: jax.Array, new: jax.Array, axis: int = 0) -> jax.Array:
            d = jnp.expand_dims(done, tuple(i for i in range(old.ndim) if i != axis))
            return jnp.where(d, old, new)

        env_state = jax.tree.map(keep, env_state, env_state2)
        return (keep(obs, obs2, axis=obs_axis), env_state, pstate, new_done, ret), None

    init = (obs, env_state, init_pstate(obs.shape[1 - obs_axis], batch), jnp.zeros((batch,), bool),
            jnp.zeros((batch,), jnp.float32))
    (_, _, _, _, ret), _ = jax.lax.scan(body, init, jnp.arange(num_steps), unroll=unroll)
    return ret


def member_returns(policy: Policy, env: ObsTransformWrapper, env_params: Any, params: Any,
                   keys: jax.Array, num_steps: int) -> jax.Array:
    """Returns of one parameter set over a batch of episode keys, shape ``keys.shape[:-1]``."""
    flat = keys.reshape(-1, keys.shape[-1])
    return lockstep_returns(policy, env, env_params, params, flat, num_steps).reshape(keys.shape[:-1])


def rollout_keys(key: jax.Array, population_size: int, rollouts: int, common: bool) -> jax.Array:
    """Episode keys: ``(rollouts,)`` shared by all members when ``common``, else ``(pop, rollouts)``."""
    if common:
        return jax.random.split(key, rollouts)
    return jax.random.split(key, (population_size, rollouts))


def evaluate_population(policy: Policy, env: ObsTransformWrapper, env_params: Any, population: Any,
                        key: jax.Array, rollouts: int, num_steps: int, common: bool = True) -> jax.Array:
    """Per-episode returns of every member, shape ``(pop, rollouts)``.

    ``population`` is a parameter pytree with a leading population axis.
    """
    pop_size = jax.tree.leaves(population)[0].shape[0]
    keys = rollout_keys(key, pop_size, rollouts, common)
    run = lambda p, k: member_returns(policy, env, env_params, p, k, num_steps)  # noqa: E731
    return jax.vmap(run, in_axes=(0, None if common else 0))(population, keys)
