"""Tests for pinn_jax.policies (AttentionNeuron, MLP, linear)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.policies import (
    POLICY_NAMES,
    AttentionNeuronPolicy,
    LSTMState,
    MLPPolicy,
    Policy,
    count_params,
    flatten_params,
    make_policy,
)
from pinn_jax.policies.attention_neuron import attention_logits_reference, lstm_cell, pos_table, reference_step
from pinn_jax.policies.official_format import OFFICIAL_NUM_PARAMS, from_official_flat, to_official

ATOL = 1e-5
AN = AttentionNeuronPolicy()
# Random feature counts are drawn from a small pool so that the jit caches of
# the helpers below are shared between tests (every new shape is a compile).
N_POOL = (2, 3, 5, 8, 13, 17, 32)


# ----------------------------------------------------------------------------- helpers
@partial(jax.jit, static_argnums=0)
def jstep(policy, prepared, state, obs, prev_action):
    return policy.step(prepared, state, obs, prev_action)


@partial(jax.jit, static_argnums=(0, 2))
def jinit(policy, key, obs_dim):
    return policy.init(key, obs_dim)


@partial(jax.jit, static_argnums=0)
def jprepare(policy, params):
    return policy.prepare(params)


@partial(jax.jit, static_argnums=0)
def rollout(policy, params, state, obs_seq, act_seq):
    """Open-loop rollout: obs_seq (T, n), act_seq (T, act_dim) used as prev actions."""
    prepared = policy.prepare(params)

    def body(s, xs):
        o, a = xs
        s, act, aux = policy.step(prepared, s, o, a)
        return s, (act, aux["latent"], aux["attention"])

    return jax.lax.scan(body, state, (obs_seq, act_seq))


def permute_state(state: LSTMState, perm) -> LSTMState:
    return LSTMState(h=state.h[perm], c=state.c[perm])


def random_params(seed: int, policy=AN, obs_dim: int = 5):
    return jinit(policy, jax.random.key(seed), obs_dim)


# ----------------------------------------------------------------------------- construction
def test_make_policy_names_and_protocol():
    for name in POLICY_NAMES:
        pol = make_policy(name)
        assert isinstance(pol, Policy)
        assert pol.act_dim == 1
        hash(pol)  # usable as a jit static argument
        assert pol == make_policy(name)
    assert isinstance(make_policy("attention_neuron"), AttentionNeuronPolicy)
    assert make_policy("linear").hidden == ()
    assert make_policy("mlp", hidden=[16, 16]).hidden == (16, 16)  # lists normalised, still hashable
    hash(make_policy("mlp", hidden=[16, 16]))


def test_make_policy_unknown_name():
    with pytest.raises(ValueError) as err:
        make_policy("transformer")
    msg = str(err.value)
    for name in POLICY_NAMES:
        assert name in msg
    with pytest.raises(ValueError):
        make_policy("linear", hidden=(8,))


@pytest.mark.parametrize(
    "name,kwargs,obs_dim,expected",
    [
        ("attention_neuron", {}, 5, 913),
        ("mlp", {}, 5, 113),
        ("mlp", {"hidden": (16,)}, 5, 113),
        ("mlp", {"hidden": (16, 16)}, 5, 385),
        ("linear", {}, 5, 6),
    ],
)
def test_param_counts(name, kwargs, obs_dim, expected):
    pol = make_policy(name, **kwargs)
    params = jinit(pol, jax.random.key(0), obs_dim)
    assert pol.num_params(obs_dim) == expected
    assert count_params(params) == expected
    assert flatten_params(params)[0].shape == (expected,)
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.dtype == jnp.float32


def test_attention_param_breakdown_and_fixed_queries():
    params = random_params(0)
    # independent of the number of features and of the logit scaling
    assert AN.num_params(17) == AN.num_params(64) == AttentionNeuronPolicy(scale=True).num_params(5) == 913
    sizes = {k: count_params(v) for k, v in params.items()}
    assert sizes == {"lstm": 384, "w_q": 256, "w_k": 256, "head": 17}
    assert params["lstm"]["weight_ih"].shape == (32, 2)
    assert params["lstm"]["weight_hh"].shape == (32, 8)
    assert params["w_q"].shape == (8, 32) and params["w_k"].shape == (8, 32)
    # the query table is fixed, not a parameter
    assert all(leaf.shape != (16, 8) for leaf in jax.tree_util.tree_leaves(params))
    q = pos_table(16, 8)
    assert q.shape == (16, 8)
    np.testing.assert_allclose(q[0], [0, 1, 0, 1, 0, 1, 0, 1], atol=0)
    i = 7
    for j in range(8):
        angle = i / 10000 ** (2 * (j // 2) / 8)
        want = np.sin(angle) if j % 2 == 0 else np.cos(angle)
        assert abs(q[i, j] - want) < 1e-6
    np.testing.assert_array_equal(AN.queries, q)


# ----------------------------------------------------------------------------- permutation invariance
@pytest.mark.parametrize("seed", range(6))
def test_single_step_permutation_invariance(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice(N_POOL))
    perm = rng.permutation(n)
    prepared = jprepare(AN, random_params(seed))
    obs = jnp.asarray(rng.normal(size=n), jnp.float32)
    a_prev = jnp.asarray(rng.uniform(-1, 1, size=1), jnp.float32)
    s1, act1, aux1 = jstep(AN, prepared, AN.initial_state(n), obs, a_prev)
    s2, act2, aux2 = jstep(AN, prepared, AN.initial_state(n), obs[perm], a_prev)
    np.testing.assert_allclose(act2, act1, atol=ATOL)
    np.testing.assert_allclose(aux2["latent"], aux1["latent"], atol=ATOL)
    np.testing.assert_allclose(aux2["attention"], aux1["attention"][:, perm], atol=ATOL)
    np.testing.assert_allclose(s2.h, s1.h[perm], atol=ATOL)
    np.testing.assert_allclose(s2.c, s1.c[perm], atol=ATOL)
    assert np.abs(np.asarray(act1)).max() <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_rollout_permutation_invariance(seed):
    """20 steps, fixed action sequence, same feature permutation every step."""
    rng = np.random.default_rng(100 + seed)
    n, T = int(rng.choice(N_POOL)), 20
    perm = rng.permutation(n)
    params = random_params(seed)
    obs = jnp.asarray(rng.normal(size=(T, n)), jnp.float32)
    acts = jnp.asarray(rng.uniform(-1, 1, size=(T, 1)), jnp.float32)
    s1, (a1, m1, w1) = rollout(AN, params, AN.initial_state(n), obs, acts)
    s2, (a2, m2, w2) = rollout(AN, params, AN.initial_state(n), obs[:, perm], acts)
    assert a1.shape == (T, 1) and m1.shape == (T, 16) and w1.shape == (T, 16, n)
    np.testing.assert_allclose(a2, a1, atol=ATOL)
    np.testing.assert_allclose(m2, m1, atol=ATOL)
    np.testing.assert_allclose(w2, w1[:, :, perm], atol=ATOL)
    np.testing.assert_allclose(s2.h, s1.h[perm], atol=ATOL)
    # the recurrent state actually matters: actions vary over time
    assert np.ptp(np.asarray(a1)) > 1e-3


@pytest.mark.parametrize("seed", range(3))
def test_mid_rollout_permutation_with_state(seed):
    """Re-shuffle features mid-episode; permuting the LSTM state alongside keeps outputs."""
    rng = np.random.default_rng(200 + seed)
    n, T, t0 = int(rng.choice(N_POOL[1:])), 20, 10
    perm = rng.permutation(n)
    while np.all(perm == np.arange(n)):
        perm = rng.permutation(n)
    params = random_params(seed)
    obs = jnp.asarray(rng.normal(size=(T, n)), jnp.float32)
    acts = jnp.asarray(rng.uniform(-1, 1, size=(T, 1)), jnp.float32)
    _, (a_ref, m_ref, w_ref) = rollout(AN, params, AN.initial_state(n), obs, acts)
    s_mid, (a_first, _, _) = rollout(AN, params, AN.initial_state(n), obs[:t0], acts[:t0])
    np.testing.assert_allclose(a_first, a_ref[:t0], atol=ATOL)

    _, (a_p, m_p, w_p) = rollout(AN, params, permute_state(s_mid, perm), obs[t0:, perm], acts[t0:])
    np.testing.assert_allclose(a_p, a_ref[t0:], atol=ATOL)
    np.testing.assert_allclose(m_p, m_ref[t0:], atol=ATOL)
    np.testing.assert_allclose(w_p, w_ref[t0:, :, perm], atol=ATOL)

    # control: permuting observations WITHOUT the state breaks the equality (test can fail)
    _, (a_bad, _, _) = rollout(AN, params, s_mid, obs[t0:, perm], acts[t0:])
    assert np.abs(np.asarray(a_bad) - np.asarray(a_ref[t0:])).max() > 1e-4

    # a reset state is also consistent with any permutation
    _, (a_r1, _, _) = rollout(AN, params, AN.initial_state(n), obs[t0:], acts[t0:])
    _, (a_r2, _, _) = rollout(AN, params, AN.initial_state(n), obs[t0:, perm], acts[t0:])
    np.testing.assert_allclose(a_r2, a_r1, atol=ATOL)


def test_closed_loop_permutation_invariance():
    """Feed back the policy's own actions (as in a real episode) under a fixed shuffle."""
    rng = np.random.default_rng(7)
    n, T = 9, 20
    perm = rng.permutation(n)
    prepared = jprepare(AN, random_params(3))
    obs = rng.normal(size=(T, n)).astype(np.float32)
    outs = []
    for p in (np.arange(n), perm):
        s, a, acts = AN.initial_state(n), jnp.zeros(1), []
        for t in range(T):
            s, a, _ = jstep(AN, prepared, s, jnp.asarray(obs[t, p]), a)
            acts.append(np.asarray(a))
        outs.append(np.stack(acts))
    np.testing.assert_allclose(outs[1], outs[0], atol=ATOL)


@pytest.mark.parametrize("hidden", [(16,), (16, 16), ()])
def test_mlp_not_permutation_invariant(hidden):
    pol = MLPPolicy(hidden=hidden)
    rng = np.random.default_rng(1)
    params = jinit(pol, jax.random.key(1), 5)
    obs = jnp.asarray(rng.normal(size=5), jnp.float32)
    perm = np.array([1, 0, 3, 4, 2])
    _, a1, _ = jstep(pol, params, (), obs, jnp.zeros(1))
    _, a2, _ = jstep(pol, params, (), obs[perm], jnp.zeros(1))
    assert np.abs(np.asarray(a1) - np.asarray(a2)).max() > 1e-4


# ----------------------------------------------------------------------------- shapes
# Each feature count is a fresh XLA compile (~0.2 s on 2 cores), so sample 1..64
# at both ends, around the cart-pole size 5 and around powers of two.
SHAPE_SIZES = (1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 32, 33, 63, 64)


def test_shapes_1_to_64_features():
    prepared = jprepare(AN, random_params(0))
    rng = np.random.default_rng(0)
    for n in SHAPE_SIZES:
        obs = jnp.asarray(rng.normal(size=n), jnp.float32)
        state, act, aux = jstep(AN, prepared, AN.initial_state(n), obs, jnp.zeros(1))
        assert act.shape == (1,)
        assert aux["attention"].shape == (16, n)
        assert aux["latent"].shape == (16,)
        assert state.h.shape == state.c.shape == (n, 8)
        assert np.all(np.isfinite(np.asarray(act))) and np.abs(np.asarray(act)).max() <= 1.0


@pytest.mark.parametrize("n_noise", [0, 1, 10, 100])
def test_same_params_for_noise_features(n_noise):
    params = random_params(0, obs_dim=5)
    n = 5 + n_noise
    assert AN.num_params(n) == AN.num_params(5) == 913
    obs = jnp.asarray(np.random.default_rng(n).normal(size=n), jnp.float32)
    s, a, aux = jstep(AN, jprepare(AN, params), AN.initial_state(n), obs, jnp.zeros(1))
    assert a.shape == (1,) and aux["attention"].shape == (16, n)
    s_ref, a_ref, _ = jax.jit(partial(reference_step, AN))(params, AN.initial_state(n), obs, jnp.zeros(1))
    np.testing.assert_allclose(a, a_ref, atol=ATOL)


def test_attention_state_mismatch_raises():
    prepared = AN.prepare(random_params(0))
    with pytest.raises(ValueError, match="features"):
        AN.step(prepared, AN.initial_state(5), jnp.zeros(6), jnp.zeros(1))


def test_actions_bounded_for_large_params():
    params = jax.tree_util.tree_map(lambda x: 50.0 * x, random_params(0))
    for pol, p in ((AN, params), (MLPPolicy(), jax.tree_util.tree_map(lambda x: 50.0 * x + 1.0, jinit(MLPPolicy(), jax.random.key(0), 5)))):
        st = pol.initial_state(5)
        _, a, _ = jstep(pol, jprepare(pol, p), st, 10.0 * jnp.arange(5.0), jnp.ones(1))
        assert np.abs(np.asarray(a)).max() <= 1.0


# ----------------------------------------------------------------------------- population / pytrees / jit
@pytest.mark.parametrize("name,kwargs", [("attention_neuron", {}), ("mlp", {"hidden": (16, 16)}), ("linear", {})])
def test_vmap_population_matches_loop(name, kwargs):
    pol = make_policy(name, **kwargs)
    pop, n = 256, 5
    keys = jax.random.split(jax.random.key(42), pop)
    params = jax.jit(jax.vmap(lambda k: pol.init(k, n)))(keys)
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(pop, n)), jnp.float32)
    a_prev = jnp.asarray(rng.uniform(-1, 1, size=(pop, 1)), jnp.float32)
    state0 = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (pop, *x.shape)), pol.initial_state(n))

    @jax.jit
    def pop_step(params, state, obs, a_prev):
        prepared = jax.vmap(pol.prepare)(params)
        return jax.vmap(pol.step)(prepared, state, obs, a_prev)

    states, acts, aux = pop_step(params, state0, obs, a_prev)
    assert acts.shape == (pop, 1)
    for i in (0, 1, 137, pop - 1):
        p_i = jax.tree_util.tree_map(lambda x: x[i], params)
        s_i, a_i, aux_i = jstep(pol, jprepare(pol, p_i), pol.initial_state(n), obs[i], a_prev[i])
        np.testing.assert_allclose(acts[i], a_i, atol=1e-6)
        for leaf, leaf_i in zip(jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(s_i)):
            np.testing.assert_allclose(leaf[i], leaf_i, atol=1e-6)
        for k in aux_i:
            np.testing.assert_allclose(aux[k][i], aux_i[k], atol=1e-6)
    # different members really are different
    assert np.ptp(np.asarray(acts)) > 1e-3


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_flatten_roundtrip_exact(name):
    pol = make_policy(name)
    params = jinit(pol, jax.random.key(3), 6)
    flat, unflatten = flatten_params(params)
    assert flat.ndim == 1 and flat.shape[0] == pol.num_params(6)
    rebuilt = unflatten(flat)
    assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(rebuilt), jax.tree_util.tree_leaves(params)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(flatten_params(rebuilt)[0], flat)
    # a perturbed vector lands back in the right leaves
    shifted = unflatten(flat + 1.0)
    for a, b in zip(jax.tree_util.tree_leaves(shifted), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b + 1.0)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_jit_compiles_once_for_fixed_shape(name):
    pol = make_policy(name)
    traces = []

    @jax.jit
    def run(params, state, obs, a_prev):
        traces.append(1)  # Python side effect: runs only while tracing
        return pol.step(pol.prepare(params), state, obs, a_prev)

    rng = np.random.default_rng(0)
    outs = []
    shape = (7, 6) if pol.takes_patches else (6,)  # 7 patches of 6 features, or 6 features
    for i in range(4):
        params = jinit(pol, jax.random.key(i), 6)
        obs = jnp.asarray(rng.normal(size=shape), jnp.float32)
        a_prev = jnp.asarray(rng.uniform(-1, 1, size=1), jnp.float32)
        outs.append(np.asarray(run(params, pol.initial_state(6), obs, a_prev)[1]))
    assert len(traces) == 1
    assert len({float(o[0]) for o in outs}) == 4  # new values really were used


def test_policy_as_static_arg_no_retrace():
    traces = []

    @partial(jax.jit, static_argnums=0)
    def run(pol, params, obs):
        traces.append(1)
        return pol.step(pol.prepare(params), pol.initial_state(5), obs, jnp.zeros(1))[1]

    params = random_params(0)
    run(AttentionNeuronPolicy(), params, jnp.ones(5))
    run(AttentionNeuronPolicy(), params, jnp.zeros(5))  # equal, freshly built policy -> cache hit
    assert len(traces) == 1


# ----------------------------------------------------------------------------- MLP specifics
def test_mlp_wrong_obs_size_raises():
    pol = MLPPolicy(hidden=(16,))
    params = jinit(pol, jax.random.key(0), 5)
    with pytest.raises(ValueError, match=r"size 5.*\(7,\)") as err:
        pol.step(params, (), jnp.zeros(7), jnp.zeros(1))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"size 5.*\(4,\)"):
        jstep(pol, params, (), jnp.zeros(4), jnp.zeros(1))  # raised at trace time under jit
    lin = make_policy("linear")
    with pytest.raises(ValueError, match=r"size 5.*\(6,\)"):
        lin.step(jinit(lin, jax.random.key(0), 5), (), jnp.zeros(6), jnp.zeros(1))
    fixed = MLPPolicy(obs_dim=5)
    with pytest.raises(ValueError, match="obs_dim=5.*obs_dim=8"):
        fixed.init(jax.random.key(0), 8)


def test_mlp_interface_details():
    pol = MLPPolicy(hidden=(16, 16))
    params = jinit(pol, jax.random.key(0), 5)
    assert pol.initial_state(5) == ()
    assert pol.prepare(params) is params
    obs = jnp.asarray(np.random.default_rng(0).normal(size=5), jnp.float32)
    _, a, aux = pol.step(params, (), obs, jnp.zeros(1))
    p = params["params"]
    h = np.tanh(np.asarray(obs) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"])
    h = np.tanh(h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"])
    want = np.tanh(h @ p["out"]["kernel"] + p["out"]["bias"])
    np.testing.assert_allclose(a, want, atol=1e-6)
    assert isinstance(aux, dict)


# ----------------------------------------------------------------------------- attention internals
@pytest.mark.parametrize("scale", [False, True])
def test_prepare_folded_matches_unfolded(scale):
    pol = AttentionNeuronPolicy(scale=scale)
    rng = np.random.default_rng(5)
    params = jinit(pol, jax.random.key(5), 5)
    prepared = jprepare(pol, params)
    keys = jnp.asarray(rng.normal(size=(13, 8)), jnp.float32)
    folded = prepared["p"] @ keys.T
    s = np.sqrt(32.0) if scale else 1.0
    unfolded = jax.jit(attention_logits_reference, static_argnums=3)(params, keys, jnp.asarray(pos_table(16, 8)), s)
    assert folded.shape == (16, 13)
    np.testing.assert_allclose(folded, unfolded, atol=ATOL, rtol=1e-5)
    # and the full fused step equals the unfused, unfolded reference step (non-zero state)
    n = 13
    state = LSTMState(
        h=jnp.asarray(rng.uniform(-1, 1, size=(n, 8)), jnp.float32),
        c=jnp.asarray(rng.normal(size=(n, 8)), jnp.float32),
    )
    obs = jnp.asarray(rng.normal(size=n), jnp.float32)
    a_prev = jnp.asarray([0.3], jnp.float32)
    got = jstep(pol, prepared, state, obs, a_prev)
    want = jax.jit(partial(reference_step, pol))(params, state, obs, a_prev)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, atol=ATOL)


def test_scale_changes_output():
    params = random_params(0)
    obs, st = jnp.linspace(-1, 1, 5), AN.initial_state(5)
    a0 = AN.step(AN.prepare(params), st, obs, jnp.zeros(1))[2]["attention"]
    sc = AttentionNeuronPolicy(scale=True)
    a1 = sc.step(sc.prepare(params), st, obs, jnp.zeros(1))[2]["attention"]
    np.testing.assert_allclose(np.arctanh(a1), np.arctanh(a0) / np.sqrt(32.0), atol=1e-4)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_torch_lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """Plain numpy re-statement of torch.nn.LSTMCell (gate order i, f, g, o)."""
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    hs = h.shape[-1]
    i = _np_sigmoid(gates[:, 0 * hs : 1 * hs])
    f = _np_sigmoid(gates[:, 1 * hs : 2 * hs])
    g = np.tanh(gates[:, 2 * hs : 3 * hs])
    o = _np_sigmoid(gates[:, 3 * hs : 4 * hs])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def test_lstm_matches_numpy_torch_semantics():
    rng = np.random.default_rng(11)
    params = random_params(11)
    # make the gates distinguishable: perturb each gate block differently
    lstm = {k: np.asarray(v, np.float64) for k, v in params["lstm"].items()}
    n = 6
    obs = rng.normal(size=n)
    a_prev = np.array([-0.4])
    h = rng.uniform(-1, 1, size=(n, 8))
    c = rng.normal(size=(n, 8))
    x = np.concatenate([obs[:, None], np.broadcast_to(a_prev, (n, 1))], axis=1)
    h_np, c_np = _np_torch_lstm_cell(x, h, c, lstm["weight_ih"], lstm["weight_hh"], lstm["bias_ih"], lstm["bias_hh"])

    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    h_j, c_j = lstm_cell(params["lstm"], f32(x), f32(h), f32(c))
    np.testing.assert_allclose(h_j, h_np, atol=ATOL)
    np.testing.assert_allclose(c_j, c_np, atol=ATOL)
    # the policy's fused step produces the same per-feature state (= the keys)
    state, _, _ = AN.step(AN.prepare(params), LSTMState(f32(h), f32(c)), f32(obs), f32(a_prev))
    np.testing.assert_allclose(state.h, h_np, atol=ATOL)
    np.testing.assert_allclose(state.c, c_np, atol=ATOL)
    # and the gate order matters: swapping the f and g row blocks changes the result
    w_sw = lstm["weight_ih"].copy()
    w_sw[8:16], w_sw[16:24] = lstm["weight_ih"][16:24], lstm["weight_ih"][8:16]
    h_sw, _ = _np_torch_lstm_cell(x, h, c, w_sw, lstm["weight_hh"], lstm["bias_ih"], lstm["bias_hh"])
    assert np.abs(h_sw - h_np).max() > 1e-3


def test_attention_gain_acts_like_a_scaled_query_projection_and_is_built_from_the_config():
    from pinn_jax import config as config_lib
    from pinn_jax.experiment import build_policy

    params = AN.init(jax.random.PRNGKey(3), 5)
    gained = AttentionNeuronPolicy(attention_gain=4.0)
    scaled = {**params, "w_q": params["w_q"] * 4.0}
    obs = jax.random.normal(jax.random.PRNGKey(4), (20, 5))

    def run(policy, p):
        prepared = policy.prepare(p)

        def body(carry, o):
            state, act = carry
            state, act, aux = policy.step(prepared, state, o, act)
            return (state, act), (act, aux["attention"])

        return jax.lax.scan(body, (policy.initial_state(5), jnp.zeros(1)), obs)[1]

    (a_gain, att_gain), (a_ref, att_ref), (a_plain, _) = run(gained, params), run(AN, scaled), run(AN, params)
    np.testing.assert_allclose(a_gain, a_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(att_gain, att_ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a_gain, a_plain, atol=1e-3)  # the gain does change the policy
    # the authors' layout has no gain: it is folded into W_q there and taken out again on the way back
    np.testing.assert_allclose(to_official(params, gained), to_official(scaled), rtol=1e-6)
    back = from_official_flat(to_official(params, gained), gained)
    np.testing.assert_allclose(back["w_q"], params["w_q"], rtol=1e-6, atol=1e-7)
    cfg = config_lib.from_dict({"policy": {"attention_gain": 4}})
    assert build_policy(cfg.policy) == gained
    with pytest.raises(config_lib.ConfigError, match="policy.attention_gain"):
        config_lib.from_dict({"policy": {"attention_gain": 0.0}})


def test_action_gain_acts_like_a_scaled_output_layer_in_every_path_and_is_built_from_the_config():
    from pinn_jax import config as config_lib
    from pinn_jax.experiment import build_policy

    params = AN.init(jax.random.PRNGKey(5), 5)
    gained = AttentionNeuronPolicy(action_gain=3.0)
    scaled = {**params, "head": {k: v * 3.0 for k, v in params["head"].items()}}
    obs = jax.random.normal(jax.random.PRNGKey(6), (20, 5))
    prev = jax.random.uniform(jax.random.PRNGKey(8), (20, 1), minval=-1.0, maxval=1.0)
    state = AN.initial_state(5)
    a_gain, a_ref, a_plain = (rollout(pol, p, state, obs, prev)[1][0]
                              for pol, p in ((gained, params), (AN, scaled), (AN, params)))
    np.testing.assert_allclose(a_gain, a_ref, rtol=1e-5, atol=1e-6)
    _, ref, _ = jax.jit(partial(reference_step, gained))(params, state, obs[0], prev[0])
    np.testing.assert_allclose(ref, a_ref[0], rtol=1e-5, atol=1e-6)
    assert np.abs(a_gain - a_plain).max() > 1e-2  # the gain does change the policy
    # the lockstep batch path (the fitness evaluation) applies it too
    prepared = gained.prepare(params)
    state = gained.initial_batch_state(5, 3)
    batch = jax.random.normal(jax.random.PRNGKey(7), (5, 3))
    _, acts = gained.step_batch(prepared, state, batch)
    for b in range(3):
        _, single, _ = AN.step(AN.prepare(scaled), AN.initial_state(5), batch[:, b], jnp.zeros(1))
        np.testing.assert_allclose(acts[b], single, rtol=1e-5, atol=1e-6)
    # the authors' layout has no gain: it is folded into the output layer there and taken out on the way back
    np.testing.assert_allclose(to_official(params, gained), to_official(scaled), rtol=1e-6)
    back = from_official_flat(to_official(params, gained), gained)
    np.testing.assert_allclose(back["head"]["kernel"], params["head"]["kernel"], rtol=1e-6, atol=1e-7)
    cfg = config_lib.from_dict({"policy": {"action_gain": 3}})
    assert build_policy(cfg.policy) == gained
    with pytest.raises(config_lib.ConfigError, match="policy.action_gain"):
        config_lib.from_dict({"policy": {"action_gain": -1.0}})


def test_head_layers_compute_the_authors_hidden_tanh_layers_in_every_path():
    """``head_layers``: tanh layers of width hidden_dim between the latent and the output, as in the authors'
    fully connected solution (``num_hidden_layers``); step, the lockstep batch path and the unfused reference
    agree, order invariance holds, the authors' flat layout round-trips, and the config builds it."""
    from pinn_jax import config as config_lib
    from pinn_jax.experiment import build_policy

    pol = AttentionNeuronPolicy(head_layers=2)
    assert pol.num_params(5) == 913 + 2 * (16 * 16 + 16)
    params = pol.init(jax.random.PRNGKey(6), 5)
    assert count_params(params) == pol.num_params(5)
    assert [layer["kernel"].shape for layer in params["head_hidden"]] == [(16, 16), (16, 16)]
    rng = np.random.default_rng(6)
    n, b = 7, 3
    obs = jnp.asarray(rng.normal(size=(b, n)), jnp.float32)
    prepared = jprepare(pol, params)
    a_prev = jnp.asarray([0.2], jnp.float32)
    state = pol.initial_state(n)
    _, act, aux = jstep(pol, prepared, state, obs[0], a_prev)
    _, ref, _ = jax.jit(partial(reference_step, pol))(params, state, obs[0], a_prev)
    np.testing.assert_allclose(act, ref, atol=ATOL)
    # the output really goes through the hidden layers: the latent alone with the output layer differs
    direct = np.tanh(np.asarray(aux["latent"]) @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"]))
    assert np.abs(direct - np.asarray(act)).max() > 1e-3
    x = np.asarray(aux["latent"], np.float64)
    for layer in params["head_hidden"]:
        x = np.tanh(x @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]))
    np.testing.assert_allclose(act, np.tanh(x @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])),
                               atol=ATOL)
    # two lockstep steps of b episodes equal b closed-loop runs of step
    bstate = pol.initial_batch_state(n, b)
    singles = [(state, jnp.zeros(1)) for _ in range(b)]
    for _ in range(2):
        bstate, bact = pol.step_batch(prepared, bstate, obs.T)
        outs = [pol.step(prepared, s, obs[i], a) for i, (s, a) in enumerate(singles)]
        singles = [(o[0], o[1]) for o in outs]
        np.testing.assert_allclose(bact, np.stack([o[1] for o in outs]), atol=ATOL)
    perm = rng.permutation(n)
    np.testing.assert_allclose(jstep(pol, prepared, state, obs[0][perm], a_prev)[1], act, atol=ATOL)
    back = from_official_flat(to_official(params, pol), pol)
    for got, want in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(got, want)
    assert build_policy(config_lib.from_dict({"policy": {"head_layers": 2}}).policy) == pol
    with pytest.raises(config_lib.ConfigError, match="policy.head_layers"):
        config_lib.from_dict({"policy": {"head_layers": -1}})


def test_init_forget_bias_starts_the_search_with_a_long_memory_and_changes_no_policy():
    from pinn_jax import config as config_lib
    from pinn_jax.experiment import build_policy

    long = AttentionNeuronPolicy(init_forget_bias=5.0)
    h = long.pos_em_dim
    template = AN.init(jax.random.PRNGKey(0), 5)
    start = long.search_start(template)
    for name in ("bias_ih", "bias_hh"):  # half of the bias on each of the two forget-gate rows, all else 0
        np.testing.assert_array_equal(start["lstm"][name], np.r_[np.zeros(h), np.full(h, 2.5), np.zeros(2 * h)])
    rest = {**start, "lstm": {k: v for k, v in start["lstm"].items() if not k.startswith("bias")}}
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(rest))
    np.testing.assert_array_equal(jax.tree.leaves(AN.search_start(template))[0], 0.0)
    # the random init gets the same offset; the parameter count and the step are the paper's
    shifted = long.init(jax.random.PRNGKey(0), 5)["lstm"]["bias_hh"] - template["lstm"]["bias_hh"]
    np.testing.assert_allclose(shifted, np.r_[np.zeros(h), np.full(h, 2.5), np.zeros(2 * h)], atol=1e-6)
    assert long.num_params() == OFFICIAL_NUM_PARAMS

    def cell_after(policy, params, steps):  # one input pulse through the g gate, then zeros
        params = {**params, "lstm": {**params["lstm"], "weight_ih": params["lstm"]["weight_ih"].at[2 * h:3 * h, 0].set(1.0)}}
        prepared, state = policy.prepare(params), policy.initial_state(5)
        for t in range(steps):
            state, _, _ = policy.step(prepared, state, jnp.full(5, 1.0 if t == 0 else 0.0), jnp.zeros(1))
        return np.asarray(state.c)

    pulse = 0.5 * np.tanh(1.0)  # i = sigmoid(0) times g = tanh(1)
    np.testing.assert_allclose(cell_after(long, start, 101), pulse * (1 / (1 + np.exp(-5.0))) ** 100, rtol=1e-3)
    assert np.abs(cell_after(AN, AN.search_start(template), 101)).max() < 1e-20  # forget gate 0.5: gone
    assert build_policy(config_lib.from_dict({"policy": {"init_forget_bias": 5}}).policy) == long
    with pytest.raises(config_lib.ConfigError, match="policy.init_forget_bias"):
        config_lib.from_dict({"policy": {"init_forget_bias": float("nan")}})
