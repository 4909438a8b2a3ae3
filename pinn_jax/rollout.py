"""Episodes as pure functions: one policy, one environment, ``lax.scan`` over time.

``episode`` runs one episode (optionally recording it). For fitness, ``member_returns`` runs all
rollouts of one member in lockstep (:func:`lockstep_returns`: one ``lax.scan`` over time with the
policy stepping the whole batch at once) and ``evaluate_population`` vmaps that over the
population. Both give the same returns as ``episode`` (same keys, starts and noise; up to float32
rounding). With common random numbers (the official trainer's protocol, the default) every member
sees the same episode starts, permutations and noise.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jax.flatten_util import ravel_pytree

from pinn_jax.config import Config, EnvConfig, PolicyConfig, TrainConfig
from pinn_jax.envs import ObsTransform, ObsTransformWrapper, make
from pinn_jax.policies import Policy, make_policy


class Episode(NamedTuple):
    """Result of one episode. ``trajectory`` is only filled when recording."""

    ret: jax.Array  # total reward until termination (inclusive)
    length: jax.Array  # number of steps taken until termination
    trajectory: dict[str, Any] | None = None


def build_env(env_cfg: EnvConfig, transform: ObsTransform = ObsTransform()) -> tuple[ObsTransformWrapper, Any]:
    """The configured environment wrapped with the observation transform, and its params."""
    overrides: dict[str, Any] = {"max_steps_in_episode": env_cfg.max_steps}
    if env_cfg.name.startswith("CartPoleSwingUp"):
        overrides["hard"] = env_cfg.start == "hard"
    env, params = make(env_cfg.name, **overrides)
    return ObsTransformWrapper(env, transform), params


def transform_from(train_cfg: TrainConfig) -> ObsTransform:
    """Train-time observation augmentation from the config."""
    return ObsTransform(shuffle=train_cfg.shuffle, shuffle_every=train_cfg.shuffle_every,
                        num_noise=train_cfg.num_noise)


def build_policy(policy_cfg: PolicyConfig) -> Policy:
    """The configured policy."""
    if policy_cfg.name == "attention_neuron":
        return make_policy("attention_neuron", hidden_dim=policy_cfg.hidden_dim, msg_dim=policy_cfg.msg_dim,
                           pos_em_dim=policy_cfg.pos_em_dim, scale=policy_cfg.scale,
                           attention_gain=policy_cfg.attention_gain)
    if policy_cfg.name == "mlp":
        return make_policy("mlp", hidden=tuple(policy_cfg.hidden))
    return make_policy("linear")


def obs_dim_of(env: ObsTransformWrapper, env_params: Any) -> int:
    """Number of features the policy receives (after noise features are appended)."""
    obs, _ = jax.eval_shape(env.reset_env, jax.random.key(0), env_params)
    return int(obs.shape[-1])


def flat_layout(cfg: Config) -> tuple[Policy, Callable[[jax.Array], Any], int]:
    """The configured policy, the function that turns its flat parameters into a pytree, and their count.

    The layout is that of the policy's initialiser for the observations the config's env and transform give.
    """
    policy = build_policy(cfg.policy)
    template = policy.init(jax.random.PRNGKey(0), obs_dim_of(*build_env(cfg.env, transform_from(cfg.train))))
    flat, unravel = ravel_pytree(template)
    return policy, unravel, int(flat.size)


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


def _batch_policy(policy: Policy) -> tuple[Callable, Callable, int]:
    """``(init(obs_dim, batch), step(prepared, state, obs) -> (state, actions (B, act_dim)), obs_axis)``.

    Policies with a lockstep ``step_batch`` (the attention neuron) use it, with feature-major
    observations ``(N, B)`` (``obs_axis`` 1); for the others the per-agent ``step`` is vmapped
    over the batch of observations ``(B, N)`` (``obs_axis`` 0), the previous actions kept in the state.
    """
    if hasattr(policy, "step_batch") and hasattr(policy, "initial_batch_state"):
        return policy.initial_batch_state, policy.step_batch, 1

    def init(obs_dim: int, batch: int) -> Any:
        one = policy.initial_state(obs_dim)
        pstate = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *jnp.shape(x))), one)
        return pstate, jnp.zeros((batch, policy.act_dim), jnp.float32)

    def step(prepared: Any, state: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        pstate, prev = state
        pstate, act, _ = jax.vmap(policy.step, in_axes=(None, 0, 0, 0))(prepared, pstate, obs, prev)
        return (pstate, act), act

    return init, step, 0


def lockstep_returns(policy: Policy, env: ObsTransformWrapper, env_params: Any, params: Any,
                     keys: jax.Array, num_steps: int, unroll: int = 1) -> jax.Array:
    """Returns of one parameter set over episode keys ``(B, 2)``, all episodes in one time loop.

    Same episodes as ``episode`` with each key (reset and per-step keys derived identically, the
    env state frozen once done). For a policy with ``step_batch`` the observations are kept
    feature-major ``(N, B)`` so it sees contiguous rows. ``unroll`` is passed to ``lax.scan``.
    """
    init_pstate, step, obs_axis = _batch_policy(policy)
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
