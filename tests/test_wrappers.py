"""Tests for the observation transforms and ObsTransformWrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.envs import (
    CartPoleSwingUp,
    EnvParams,
    ObsTransform,
    ObsTransformWrapper,
    TransformState,
    make,
    transform_reset,
    transform_step,
)
from pinn_jax.errors import ConfigError

ENV = CartPoleSwingUp()
P = EnvParams()
OBS = jnp.arange(1.0, 6.0, dtype=jnp.float32)  # distinct features


def wrapped_rollout(wrapper, key, T, params=P):
    """Reset + T steps of wrapper.step_env with random actions (jittable)."""
    k0, k1 = jax.random.split(key)
    obs0, s = wrapper.reset_env(k0, params)

    def body(s, k):
        ka, ks = jax.random.split(k)
        a = jax.random.uniform(ka, (1,), minval=-1, maxval=1)
        o, s, r, d, _ = wrapper.step_env(ks, s, a, params)
        return s, (o, s.transform.perm, s.transform.t, r, d,
                   ENV.get_obs(s.env_state))

    _, out = jax.lax.scan(body, s, jax.random.split(k1, T))
    return obs0, s, out


def test_config_is_static_and_hashable():
    cfg = ObsTransform(shuffle=True, num_noise=3)
    assert hash(cfg) == hash(ObsTransform(shuffle=True, num_noise=3))
    assert jax.tree_util.tree_leaves(cfg) == []
    assert cfg.out_dim(5) == 8 and ObsTransform().out_dim(5) == 5


def test_identity_when_not_shuffled():
    out, ts = transform_reset(jax.random.key(0), ObsTransform(), OBS)
    np.testing.assert_array_equal(out, OBS)
    np.testing.assert_array_equal(ts.perm, np.arange(5))
    assert ts.perm.dtype == jnp.int32 and int(ts.t) == 0
    out, ts = transform_step(jax.random.key(1), ObsTransform(), ts, OBS + 1)
    np.testing.assert_array_equal(out, OBS + 1)
    assert int(ts.t) == 1
    # with noise: the real features come first, unchanged
    cfg = ObsTransform(num_noise=4)
    out, ts = transform_reset(jax.random.key(0), cfg, OBS)
    assert out.shape == (9,)
    np.testing.assert_array_equal(out[:5], OBS)
    np.testing.assert_array_equal(ts.perm, np.arange(9))


def test_shuffled_is_permutation_applied_exactly():
    cfg = ObsTransform(shuffle=True)
    perms = set()
    for i in range(5):
        out, ts = transform_reset(jax.random.key(i), cfg, OBS)
        perm = np.asarray(ts.perm)
        np.testing.assert_array_equal(np.sort(perm), np.arange(5))
        np.testing.assert_array_equal(out, np.asarray(OBS)[perm])
        np.testing.assert_array_equal(np.sort(out), OBS)  # same multiset
        out2, ts2 = transform_step(jax.random.key(9), cfg, ts, OBS * 2)
        np.testing.assert_array_equal(ts2.perm, perm)  # kept mid-episode
        np.testing.assert_array_equal(out2, 2 * np.asarray(OBS)[perm])
        perms.add(tuple(perm))
    assert len(perms) > 1
    # with noise the permutation covers obs_dim + num_noise features
    cfg = ObsTransform(shuffle=True, num_noise=3)
    out, ts = transform_reset(jax.random.key(1), cfg, OBS)
    perm = np.asarray(ts.perm)
    np.testing.assert_array_equal(np.sort(perm), np.arange(8))
    full = np.empty(8, np.float32)
    full[perm] = out  # undo: out = full[perm]
    np.testing.assert_array_equal(full[:5], OBS)
    assert (perm[:5] != np.arange(5)).any() or (perm[5:] != np.arange(5, 8)).any()


def test_shuffle_every_changes_exactly_at_multiples():
    k = 4
    w = ObsTransformWrapper(ENV, ObsTransform(shuffle=True, shuffle_every=k,
                                              num_noise=3))
    P_easy = P.replace(hard=False)  # no early termination
    _, s0, (obs, perms, ts, _, done, inner) = jax.jit(
        lambda key: wrapped_rollout(w, key, 3 * k, P_easy))(jax.random.key(2))
    assert not np.asarray(done).any()
    # the perm in the state is the one applied to that step's observation
    full = np.zeros((3 * k, 8), np.float32)
    np.put_along_axis(full, np.asarray(perms), np.asarray(obs), axis=1)
    np.testing.assert_array_equal(full[:, :5], inner)
    perms = np.concatenate([np.asarray(s0.transform.perm)[None], perms])
    np.testing.assert_array_equal(ts, np.arange(1, 3 * k + 1))
    for t in range(1, 3 * k + 1):
        changed = not np.array_equal(perms[t], perms[t - 1])
        assert changed == (t % k == 0), t
        np.testing.assert_array_equal(np.sort(perms[t]), np.arange(8))
    # without shuffle, a shuffle period is refused rather than silently ignored
    with pytest.raises(ConfigError, match="needs shuffle=True"):
        ObsTransform(shuffle_every=k)


def test_noise_statistics_and_independence():
    n, N = 20000, 4
    cfg = ObsTransform(num_noise=N, noise_std=0.1)
    keys = jax.random.split(jax.random.key(3), 2 * n).reshape(n, 2)

    @jax.jit
    @jax.vmap
    def two_steps(k):
        o0, ts = transform_reset(k[0], cfg, OBS)
        o1, _ = transform_step(k[1], cfg, ts, OBS)
        return o0[5:], o1[5:]

    z0, z1 = map(np.asarray, two_steps(keys))
    z = np.concatenate([z0, z1]).ravel()  # 160k samples
    # se(mean) = 0.1/sqrt(160k) = 2.5e-4; se(std) = 0.1/sqrt(320k) = 1.8e-4
    assert abs(z.mean()) < 5 * 2.5e-4
    assert abs(z.std() - 0.1) < 5 * 1.8e-4
    # independence across steps and across features: |corr| se = 1/sqrt(n)
    tol = 5 / np.sqrt(n)
    for j in range(N):
        assert abs(np.corrcoef(z0[:, j], z1[:, j])[0, 1]) < tol
    c = np.corrcoef(z0.T)
    assert np.abs(c[~np.eye(N, dtype=bool)]).max() < tol
    assert not np.array_equal(z0, z1)


def test_same_key_same_episode_different_key_differs():
    w = ObsTransformWrapper(ENV, ObsTransform(shuffle=True, shuffle_every=3,
                                              num_noise=2))
    run = jax.jit(lambda k: wrapped_rollout(w, k, 10))
    a, b, c = run(jax.random.key(5)), run(jax.random.key(5)), run(jax.random.key(6))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2][1], c[2][1])  # perms over the episode
    assert not np.array_equal(a[0], c[0])
    _, ts5 = transform_reset(jax.random.key(5), ObsTransform(shuffle=True), OBS)
    _, ts6 = transform_reset(jax.random.key(6), ObsTransform(shuffle=True), OBS)
    assert not np.array_equal(ts5.perm, ts6.perm)


def test_jit_vmap_matches_unjitted():
    cfg = ObsTransform(shuffle=True, shuffle_every=2, num_noise=3)
    keys = jax.random.split(jax.random.key(7), 64)
    obs = jax.random.normal(jax.random.key(8), (64, 5))

    @jax.jit
    @jax.vmap
    def batched(k, o):
        o0, ts = transform_reset(k, cfg, o)
        o1, ts = transform_step(jax.random.fold_in(k, 1), cfg, ts, o)
        o2, ts = transform_step(jax.random.fold_in(k, 2), cfg, ts, o)
        return o0, o1, o2, ts

    out = batched(keys, obs)
    for i in (0, 33, 63):
        o0, ts = transform_reset(keys[i], cfg, obs[i])
        o1, ts = transform_step(jax.random.fold_in(keys[i], 1), cfg, ts, obs[i])
        o2, ts = transform_step(jax.random.fold_in(keys[i], 2), cfg, ts, obs[i])
        for got, want in zip((out[0][i], out[1][i], out[2][i]), (o0, o1, o2)):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[3].perm[i], ts.perm)
    assert isinstance(out[3], TransformState) and out[3].perm.shape == (64, 8)


def test_wrapper_matches_inner_env():
    cfg = ObsTransform(shuffle=True, num_noise=2)
    w = ObsTransformWrapper(ENV, cfg)
    assert w.default_params == ENV.default_params
    assert w.name == ENV.name and w.num_actions == 1
    assert w.action_space(P).shape == (1,)
    assert w.observation_space(P).shape == (7,)
    keys = jax.random.split(jax.random.key(9), 256)
    _, s = jax.jit(jax.vmap(w.reset_env, in_axes=(0, None)))(keys, P)
    acts = jax.random.uniform(jax.random.key(10), (256, 1), minval=-1, maxval=1)
    step_w = jax.jit(jax.vmap(w.step_env, in_axes=(0, 0, 0, None)))
    step_e = jax.jit(jax.vmap(ENV.step_env, in_axes=(0, 0, 0, None)))
    o, s2, r, d, info = step_w(keys, s, acts, P)
    eo, es2, er, ed, einfo = step_e(keys, s.env_state, acts, P)
    np.testing.assert_array_equal(r, er)
    np.testing.assert_array_equal(d, ed)
    np.testing.assert_array_equal(info["discount"], einfo["discount"])
    np.testing.assert_array_equal(s2.time, es2.time)
    np.testing.assert_array_equal(w.is_terminated(s2, P), ENV.is_terminated(es2, P))
    assert 0 < np.asarray(d).sum() < 256  # hard starts: some leave the track
    # the transformed obs holds exactly the inner obs features
    full = jax.vmap(lambda o, p: jnp.zeros(7).at[p].set(o))(o, s2.transform.perm)
    np.testing.assert_array_equal(full[:, :5], eo)


def test_wrapper_base_step_autoreset_and_truncation():
    w = ObsTransformWrapper(ENV, ObsTransform(shuffle=True, num_noise=1))
    p = P.replace(hard=False, max_steps_in_episode=5)
    _, s = w.reset(jax.random.key(11), p)

    def body(s, k):
        o, s, r, term, trunc, info = w.step(k, s, jnp.zeros(1), p)
        return s, (o, trunc, s.time, s.transform.t)

    _, (o, trunc, t, tt) = jax.lax.scan(body, s, jax.random.split(jax.random.key(12), 7))
    assert o.shape == (7, 6)
    np.testing.assert_array_equal(trunc, [0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(t, [1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(tt, [1, 2, 3, 4, 0, 1, 2])


def test_wrapper_on_gymnax_env():
    env, params = make("Pendulum-v1")
    w = ObsTransformWrapper(env, ObsTransform(shuffle=True, num_noise=2))
    obs, s = w.reset(jax.random.key(13), params)
    assert obs.shape == (5,) and w.observation_space(params).shape == (5,)
    obs, s, r, term, trunc, _ = w.step(jax.random.key(14), s, jnp.array([0.5]),
                                       params)
    full = np.zeros(5, np.float32)
    full[np.asarray(s.transform.perm)] = obs
    np.testing.assert_allclose(np.cos(s.env_state.theta), full[0], rtol=1e-6)
