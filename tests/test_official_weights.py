"""Loading the authors' released AttentionNeuron cart-pole weights.

The reference file lives outside the repo at
``<repo root>/../shared/reference/attentionneuron_cartpole/model.npz``
(override the ``reference`` directory with ``$PINN_JAX_REFERENCE_DIR``).
Tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.models import official
from pinn_jax.policies import (
    AttentionNeuronPolicy,
    LSTMState,
    count_params,
    flatten_params,
    load_official,
    to_official,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBPATH = Path("attentionneuron_cartpole") / "model.npz"
POLICY = AttentionNeuronPolicy()


def _reference_file() -> Path:
    env = os.environ.get("PINN_JAX_REFERENCE_DIR")
    if env:
        return Path(env) / SUBPATH
    return REPO_ROOT / ".." / "shared" / "reference" / SUBPATH


@pytest.fixture(scope="module")
def ref_path() -> Path:
    path = _reference_file()
    if not path.is_file():
        pytest.skip(f"official weights not available at {path}")
    return path


@pytest.fixture(scope="module")
def raw(ref_path) -> np.ndarray:
    with np.load(ref_path) as data:
        return np.asarray(data["params"], np.float32)


@pytest.fixture(scope="module")
def params(ref_path):
    return load_official(ref_path)


# ----------------------------------------------------------------------------- loading
def test_weights_path_finds_the_reference_through_the_environment(ref_path):
    assert official.weights_path().resolve() == ref_path.resolve()
    p_default = load_official(official.weights_path())
    p_given = load_official(ref_path)
    for a, b in zip(jax.tree_util.tree_leaves(p_default), jax.tree_util.tree_leaves(p_given)):
        np.testing.assert_array_equal(a, b)


def test_param_count_and_structure(params, raw):
    assert raw.shape == (913,)
    assert count_params(params) == 913 == POLICY.num_params()
    assert flatten_params(params)[0].shape == (913,)
    init = POLICY.init(jax.random.key(0), 5)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(init)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(init)):
        assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32


def test_values_round_trip(params, raw):
    # explicit slices of the authors' layout (row-major torch shapes)
    np.testing.assert_array_equal(params["lstm"]["weight_ih"], raw[0:64].reshape(32, 2))
    np.testing.assert_array_equal(params["lstm"]["weight_hh"], raw[64:320].reshape(32, 8))
    np.testing.assert_array_equal(params["lstm"]["bias_ih"], raw[320:352])
    np.testing.assert_array_equal(params["lstm"]["bias_hh"], raw[352:384])
    np.testing.assert_array_equal(params["w_q"], raw[384:640].reshape(32, 8).T)
    np.testing.assert_array_equal(params["w_k"], raw[640:896].reshape(32, 8).T)
    np.testing.assert_array_equal(params["head"]["kernel"][:, 0], raw[896:912])
    np.testing.assert_array_equal(params["head"]["bias"], raw[912:913])
    # exact inverse back to the authors' flat vector
    np.testing.assert_array_equal(to_official(params), raw)
    # ravel_pytree holds the same numbers (its order differs, so compare sorted)
    flat, unflatten = flatten_params(params)
    np.testing.assert_array_equal(np.sort(np.asarray(flat)), np.sort(raw))
    np.testing.assert_array_equal(to_official(unflatten(flat)), raw)


# ----------------------------------------------------------------------------- behaviour
def _np_forward(flat: np.ndarray, obs: np.ndarray, a_prev: np.ndarray, h: np.ndarray, c: np.ndarray):
    """One step computed by hand in float64 numpy straight from the flat vector."""
    flat = flat.astype(np.float64)
    w_ih = flat[0:64].reshape(32, 2)
    w_hh = flat[64:320].reshape(32, 8)
    b_ih, b_hh = flat[320:352], flat[352:384]
    proj_q = flat[384:640].reshape(32, 8)
    proj_k = flat[640:896].reshape(32, 8)
    w_out, b_out = flat[896:912].reshape(1, 16), flat[912:913]

    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    n = obs.shape[0]
    x = np.stack([obs, np.full(n, a_prev[0])], axis=1)  # (n, 2) = [o_i, a_prev]
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = sig(gates[:, 0:8]), sig(gates[:, 8:16]), np.tanh(gates[:, 16:24]), sig(gates[:, 24:32])
    c = f * c + i * g
    h = o * np.tanh(c)

    pos = np.arange(16)[:, None] / np.power(10000.0, 2 * (np.arange(8)[None, :] // 2) / 8)
    q = pos.copy()
    q[:, 0::2] = np.sin(pos[:, 0::2])
    q[:, 1::2] = np.cos(pos[:, 1::2])
    attn = np.tanh((q @ proj_q.T) @ (h @ proj_k.T).T)  # (16, n)
    latent = np.tanh(attn @ obs)
    action = np.tanh(w_out @ latent + b_out)
    return h, c, action, attn, latent


@pytest.mark.parametrize("n_noise", [0, 3])
def test_behaviour_matches_hand_computation(params, raw, n_noise):
    n = 5 + n_noise
    rng = np.random.default_rng(0)
    # a small deterministic cart-pole-like observation (+ noise channels)
    obs_seq = [np.array([0.1, 0.9, -0.2, 0.3, -0.5] + [0.05 * k for k in range(n_noise)])]
    for _ in range(3):
        obs_seq.append(obs_seq[-1] + 0.1 * rng.normal(size=n))
    prepared = POLICY.prepare(params)
    step = jax.jit(POLICY.step)

    h = np.zeros((n, 8))
    c = np.zeros((n, 8))
    a_np = np.zeros(1)
    state, a_j = POLICY.initial_state(n), jnp.zeros(1, jnp.float32)
    for obs in obs_seq:  # closed loop: the action is fed back as a_prev
        h, c, a_np, attn, latent = _np_forward(raw, obs, a_np, h, c)
        state, a_j, aux = step(prepared, state, jnp.asarray(obs, jnp.float32), a_j)
        np.testing.assert_allclose(a_j, a_np, atol=1e-5)
        np.testing.assert_allclose(aux["attention"], attn, atol=1e-5)
        np.testing.assert_allclose(aux["latent"], latent, atol=1e-5)
        np.testing.assert_allclose(state.h, h, atol=1e-5)
        np.testing.assert_allclose(state.c, c, atol=1e-5)
    assert isinstance(state, LSTMState)
    assert np.abs(a_np).max() > 1e-3  # a non-trivial check


# ----------------------------------------------------------------------------- errors (no reference file needed)
def test_missing_file_raises(tmp_path):
    missing = tmp_path / "nope" / "model.npz"
    with pytest.raises(FileNotFoundError) as err:
        load_official(missing)
    msg = str(err.value)
    assert str(missing) in msg and "\n" not in msg


def test_wrong_key_raises(tmp_path):
    path = tmp_path / "bad_key.npz"
    np.savez(path, weights=np.zeros(913, np.float32))
    with pytest.raises(ValueError, match="params"):
        load_official(path)


def test_wrong_size_raises(tmp_path):
    path = tmp_path / "bad_size.npz"
    np.savez(path, params=np.zeros(912, np.float32))
    with pytest.raises(ValueError, match="913"):
        load_official(path)


def test_env_var_override(tmp_path, monkeypatch):
    target = tmp_path / SUBPATH
    target.parent.mkdir(parents=True)
    vec = np.arange(913, dtype=np.float32) / 913.0
    np.savez(target, params=vec)
    monkeypatch.setenv("PINN_JAX_REFERENCE_DIR", str(tmp_path))
    assert official.weights_path() == target
    np.testing.assert_array_equal(to_official(load_official(official.weights_path())), vec)


@pytest.mark.parametrize("shuffle", [False, True])
def test_official_agent_matches_paper_score_on_hard_env(params, shuffle):
    """1000 hard-start episodes: mean within 40 of the paper's 471 (released log: 516.6 ± 420.4 over 100)."""
    from pinn_jax.config import EnvConfig
    from pinn_jax.envs import ObsTransform
    from pinn_jax.experiment import build_env
    from pinn_jax.rollout import episode

    env, env_params = build_env(EnvConfig(start="hard"), ObsTransform(shuffle=shuffle))
    run = jax.jit(jax.vmap(lambda k: episode(AttentionNeuronPolicy(), env, env_params, params, k, 1000).ret))
    returns = np.asarray(run(jax.random.split(jax.random.PRNGKey(0), 1000)))
    assert abs(returns.mean() - 471.0) < 40.0, returns.mean()
    assert 380.0 < returns.std() < 470.0  # the hard start's bimodal outcome (paper: ± 426)


def test_logits_depend_on_the_projections_only_through_their_product(params):
    """``A = tanh(Q W_q W_kᵀ Kᵀ)``: only the 8×8 product ``M = W_q W_kᵀ`` matters, so ``msg_dim`` beyond the
    key width (8) adds parameters, not functions. The authors' agent refactored to ``msg_dim=8`` by an SVD of
    M (``W_q' = U√S``, ``W_k' = V√S``) has 529 parameters and plays the same episodes."""
    from pinn_jax.config import EnvConfig
    from pinn_jax.envs import ObsTransform
    from pinn_jax.experiment import build_env
    from pinn_jax.rollout import episode

    small = AttentionNeuronPolicy(msg_dim=8)
    u, s, vt = np.linalg.svd(np.asarray(params["w_q"] @ params["w_k"].T, np.float64))
    folded = {**params, "w_q": jnp.asarray(u * np.sqrt(s), jnp.float32),
              "w_k": jnp.asarray(vt.T * np.sqrt(s), jnp.float32)}
    assert count_params(folded) == small.num_params() == 529
    np.testing.assert_allclose(small.prepare(folded)["p"], POLICY.prepare(params)["p"], atol=5e-5 * 56)

    env, env_params = build_env(EnvConfig(start="hard"), ObsTransform(shuffle=True))
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    run = lambda pol, p: jax.jit(jax.vmap(  # noqa: E731
        lambda k: episode(pol, env, env_params, p, k, 1000, record=True)))(keys)
    big, sm = run(POLICY, params), run(small, folded)
    # the closed loop amplifies float32 rounding (the policy is near bang-bang): the actions agree for the
    # first 50 steps of every episode (they first part after 60-140 steps), the returns stay as good
    np.testing.assert_allclose(sm.trajectory["action"][:, :50], big.trajectory["action"][:, :50], atol=1e-2)
    assert abs(float(sm.ret.mean()) - float(big.ret.mean())) < 0.005 * float(big.ret.mean())
    assert float(big.ret.mean()) > 400.0 and float(np.std(np.asarray(big.ret))) > 100.0
