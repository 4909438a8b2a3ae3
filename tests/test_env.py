"""Tests for the cart-pole swing-up environment, ``make`` and ``render``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.config import EnvConfig
from pinn_jax.envs import CARTPOLE_NAMES, CartPoleSwingUp, EnvParams, EnvState, make, render
from pinn_jax.envs.fitness import Fitness, FitnessWrapper
from pinn_jax.errors import ConfigError
from pinn_jax.experiment import build_env

ENV = CartPoleSwingUp()
P = EnvParams()
KEY = jax.random.key(0)


def mk(x=0.0, x_dot=0.0, theta=0.0, theta_dot=0.0, time=0) -> EnvState:
    f = jnp.float32
    return EnvState(x=f(x), x_dot=f(x_dot), theta=f(theta),
                    theta_dot=f(theta_dot), time=jnp.int32(time))


def as_np(s: EnvState) -> np.ndarray:
    return np.array([s.x, s.x_dot, s.theta, s.theta_dot], np.float64)


def rollout(state, n, params, action=0.0):
    """jit-compiled n steps of step_env (no auto-reset) with a fixed action."""
    def body(s, _):
        s = ENV.step_env(KEY, s, action, params)[1]
        return s, jnp.stack([s.x, s.x_dot, s.theta, s.theta_dot])
    return jax.jit(lambda s: jax.lax.scan(body, s, None, n))(state)


def energy(s: EnvState, p: EnvParams):
    """Mechanical energy of a uniform rod (length l, centre at l/2, pole
    centre at x - l/2 sin θ) on a cart; the equations of motion in the env
    are exactly the Euler-Lagrange equations of this system."""
    m, l, g = p.masspole, p.length, p.gravity
    M = p.masscart + m
    c = jnp.cos(s.theta)
    return (0.5 * M * s.x_dot**2 - 0.5 * m * l * c * s.x_dot * s.theta_dot
            + 0.5 * (m * l**2 / 3.0) * s.theta_dot**2 + 0.5 * m * g * l * c)


# ------------------------------------------------------------------ dynamics
def test_upright_equilibrium_is_exact():
    final, traj = rollout(mk(), 1000, P)
    np.testing.assert_array_equal(np.asarray(traj), 0.0)
    assert int(final.time) == 1000


def test_hanging_rest_stays_at_rest():
    # float32(pi) is not exactly pi (sin = -8.7e-8), so the hanging pole
    # oscillates around rest with amplitude ~1e-5 at most; nothing grows.
    pi32 = float(np.float32(np.pi))
    _, traj = rollout(mk(theta=pi32), 1000, P)
    traj = np.asarray(traj)
    np.testing.assert_allclose(traj[:, 0], 0.0, atol=1e-4)
    np.testing.assert_allclose(traj[:, 1], 0.0, atol=1e-4)
    np.testing.assert_allclose(traj[:, 2], pi32, atol=1e-4)
    np.testing.assert_allclose(traj[:, 3], 0.0, atol=1e-4)


def test_single_step_hand_computed():
    x, xd, th, thd, a = 0.3, -0.7, 2.0, 1.5, 0.4
    g, mc, mp, l, fm, b, dt = 9.82, 0.5, 0.5, 0.6, 10.0, 0.1, 0.01
    M, mpl, F = mc + mp, mp * l, fm * a
    s, c = math.sin(th), math.cos(th)
    xacc = (-2 * mpl * thd**2 * s + 3 * mp * g * s * c + 4 * F - 4 * b * xd) \
        / (4 * M - 3 * mp * c**2)
    thacc = (-3 * mpl * thd**2 * s * c + 6 * M * g * s + 6 * (F - b * xd) * c) \
        / (4 * l * M - 3 * mpl * c**2)
    exp = [x + xd * dt, xd + xacc * dt, th + thd * dt, thd + thacc * dt]
    th1 = th + thd * dt
    x1 = x + xd * dt
    exp_r = (math.cos(th1) + 1) / 2 * math.cos(x1 / 2.4 * math.pi / 2)

    obs, s1, r, term, _ = ENV.step_env(KEY, mk(x, xd, th, thd, 7),
                                       jnp.array([a]), P)
    np.testing.assert_allclose(as_np(s1), exp, atol=1e-6, rtol=0)
    assert int(s1.time) == 8
    np.testing.assert_allclose(float(r), exp_r, atol=1e-6)
    assert not bool(term)
    np.testing.assert_allclose(
        obs, [exp[0], exp[1], math.cos(exp[2]), math.sin(exp[2]), exp[3]],
        atol=1e-6)


def test_scalar_and_vector_action_agree_and_clip():
    s = mk(0.1, 0.2, 1.0, -0.3)
    step = lambda a: as_np(ENV.step_env(KEY, s, a, P)[1])
    np.testing.assert_array_equal(step(jnp.array([0.5])), step(0.5))
    np.testing.assert_array_equal(step(jnp.array([5.0])), step(jnp.array([1.0])))
    np.testing.assert_array_equal(step(-7.0), step(-1.0))
    assert not np.array_equal(step(1.0), step(0.5))


def test_power_balance():
    """dE/dt = F·ẋ − b·ẋ² along the continuous dynamics, evaluated at random
    states with the accelerations taken from one env step (dt = 1 makes
    Δvelocity = acceleration).  Any sign error in the equations breaks it."""
    p = P.replace(dt=1.0)
    ks = jax.random.split(jax.random.key(1), 5)
    n = 256
    x = jax.random.uniform(ks[0], (n,), minval=-2, maxval=2)
    xd = jax.random.uniform(ks[1], (n,), minval=-3, maxval=3)
    th = jax.random.uniform(ks[2], (n,), minval=-4, maxval=4)
    thd = jax.random.uniform(ks[3], (n,), minval=-5, maxval=5)
    a = jax.random.uniform(ks[4], (n,), minval=-1, maxval=1)
    s0 = EnvState(x=x, x_dot=xd, theta=th, theta_dot=thd,
                  time=jnp.zeros(n, jnp.int32))
    s1 = jax.jit(jax.vmap(lambda s, a: ENV.step_env(KEY, s, a, p)[1]))(s0, a)
    xacc, thacc = s1.x_dot - xd, s1.theta_dot - thd
    e = lambda x, xd, th, thd: energy(
        EnvState(x=x, x_dot=xd, theta=th, theta_dot=thd, time=0), P)
    gx, gxd, gth, gthd = jax.jit(jax.vmap(jax.grad(e, argnums=(0, 1, 2, 3))))(
        x, xd, th, thd)
    dEdt = gx * xd + gth * thd + gxd * xacc + gthd * thacc
    power = 10.0 * a * xd - 0.1 * xd**2
    np.testing.assert_allclose(dEdt, power, atol=2e-4)
    assert float(jnp.abs(power).mean()) > 1.0  # the check is not vacuous


def test_energy_drift_is_first_order_in_dt():
    """Frictionless, unforced: the only energy change is Euler's O(dt) error,
    so 10x smaller dt gives ~10x smaller drift over the same 0.5 s."""
    s0 = mk(0.0, 0.5, 0.3, 0.0)
    drift = []
    for dt in (1e-2, 1e-3):
        p = P.replace(friction=0.0, dt=dt)
        sT, _ = rollout(s0, int(round(0.5 / dt)), p)
        drift.append(float(energy(sT, p) - energy(s0, p)))
    assert 0 < drift[1] < 0.15 * drift[0]
    assert abs(drift[1]) < 5e-3 * float(energy(s0, P))


# ------------------------------------------------- reward / termination / obs
def test_termination_at_track_limit():
    s = mk(2.38, 4.0, 0.1, 0.0)  # x1 = 2.42 > 2.4
    obs, s1, r, term, info = ENV.step_env(KEY, s, 0.0, P)
    assert bool(term)
    assert float(info["discount"]) == 0.0
    exp_r = (math.cos(float(s1.theta)) + 1) / 2 * math.cos(
        float(s1.x) / 2.4 * math.pi / 2)
    assert exp_r < 0
    np.testing.assert_allclose(float(r), exp_r, rtol=1e-5)
    # the base step pays the same reward, flags terminated and auto-resets
    obs_b, sb, rb, term_b, trunc_b, info_b = ENV.step(KEY, s, 0.0, P)
    assert bool(term_b) and not bool(trunc_b)
    np.testing.assert_allclose(float(rb), exp_r, rtol=1e-5)
    assert int(sb.time) == 0
    np.testing.assert_allclose(info_b["final_observation"], obs, rtol=1e-6)
    # negative side too; inside the track no termination
    assert bool(ENV.step_env(KEY, mk(-2.38, -4.0), 0.0, P)[3])
    assert not bool(ENV.step_env(KEY, mk(2.3, 4.0), 0.0, P)[3])


def test_truncation_at_1000_via_base_step():
    _, s = ENV.reset(jax.random.key(3), P.replace(hard=False))

    def body(s, k):
        _, s2, _, term, trunc, _ = ENV.step(k, s, 0.0, P.replace(hard=False))
        return s2, (term, trunc, s2.time)

    _, (term, trunc, t) = jax.lax.scan(body, s, jax.random.split(KEY, 1001))
    term, trunc, t = map(np.asarray, (term, trunc, t))
    assert not term.any()
    assert trunc[999] and not trunc[:999].any() and not trunc[1000]
    assert t[998] == 999 and t[999] == 0 and t[1000] == 1  # auto-reset


def test_reward_range_and_formula_random_states():
    n = 20000
    ks = jax.random.split(jax.random.key(4), 3)
    lo = jnp.array([-2.4, -10, -10, -10.0])
    v = jax.random.uniform(ks[0], (n, 4), minval=lo, maxval=-lo)
    a = jax.random.uniform(ks[1], (n,), minval=-1, maxval=1)
    s0 = EnvState(x=v[:, 0], x_dot=v[:, 1], theta=v[:, 2], theta_dot=v[:, 3],
                  time=jnp.zeros(n, jnp.int32))
    _, s1, r, term, _ = jax.jit(jax.vmap(
        lambda s, a: ENV.step_env(KEY, s, a, P)))(s0, a)
    r, term = np.asarray(r), np.asarray(term)
    assert 0 < term.sum() < n  # both cases occur
    np.testing.assert_array_equal(term, np.abs(np.asarray(s1.x)) > 2.4)
    assert r[~term].min() >= 0.0 and r[~term].max() <= 1.0
    assert r[term].min() < 0.0
    exp = (np.cos(s1.theta) + 1) / 2 * np.cos(np.asarray(s1.x) / 2.4 * np.pi / 2)
    np.testing.assert_allclose(r, exp, atol=1e-6)


def test_observation_layout():
    obs, s = ENV.reset(KEY, P)
    assert obs.shape == (5,) and obs.dtype == jnp.float32
    exp = [s.x, s.x_dot, np.cos(s.theta), np.sin(s.theta), s.theta_dot]
    np.testing.assert_allclose(obs, exp, rtol=1e-6)
    for leaf in (s.x, s.x_dot, s.theta, s.theta_dot):
        assert leaf.shape == () and leaf.dtype == jnp.float32
    assert s.time.shape == () and s.time.dtype == jnp.int32
    assert ENV.observation_space(P).shape == (5,)
    assert ENV.action_space(P).shape == (1,) and ENV.num_actions == 1


# ---------------------------------------------------------- start distribution
def _starts(hard: bool, n: int = 20000, upright: bool = False, env=ENV) -> np.ndarray:
    p = P.replace(hard=hard, upright=upright)
    _, s = jax.jit(jax.vmap(lambda k: env.reset_env(k, p)))(
        jax.random.split(jax.random.key(5), n))
    assert s.x.dtype == jnp.float32 and s.time.dtype == jnp.int32
    assert (np.asarray(s.time) == 0).all()
    return np.stack([s.x, s.x_dot, s.theta, s.theta_dot], 1).astype(np.float64)


def test_hard_start_distribution():
    v = _starts(True)
    n = len(v)
    lo = np.array([-2.4, -10, np.pi / 2, -10])
    hi = np.array([2.4, 10, 1.5 * np.pi, 10])
    assert (v >= lo - 1e-6).all() and (v <= hi + 1e-6).all()
    width = hi - lo
    # extremes of 20k uniforms lie within ~1e-3 of the bounds (P(miss) ~ e^-20)
    assert (v.min(0) < lo + 1e-3 * width).all()
    assert (v.max(0) > hi - 1e-3 * width).all()
    std = width / np.sqrt(12)
    np.testing.assert_array_less(np.abs(v.mean(0) - (lo + hi) / 2),
                                 5 * std / np.sqrt(n))
    np.testing.assert_allclose(v.std(0), std, rtol=0.02)  # se ~0.45% of std


def test_start_scale_shrinks_the_hard_start_around_hanging_at_rest_and_one_is_the_hard_start_exactly():
    scaled = lambda s: FitnessWrapper(ENV, Fitness(start_scale=s))  # noqa: E731
    np.testing.assert_array_equal(_starts(True, 2000, env=scaled(1.0)), _starts(True, 2000))
    mid, half = np.array([0, 0, np.pi, 0]), np.array([2.4, 10, np.pi / 2, 10])
    for s in (0.25, 0.6):
        dev = np.abs(_starts(True, env=scaled(s)) - mid)
        assert (dev <= s * half + 1e-5).all() and (dev.max(0) > 0.999 * s * half).all()
        np.testing.assert_allclose(dev.mean(0), s * half / 2, rtol=0.02)  # |U(-a, a)| has mean a/2
    np.testing.assert_array_equal(_starts(False, 2000, env=scaled(0.5)), _starts(False, 2000))  # easy: untouched


def test_upright_start_distribution_and_its_config_name():
    for hard in (True, False):  # upright takes precedence over hard
        v = _starts(hard, upright=True)
        hi = np.array([1.5, 2.0, 0.5, 2.0])
        assert (np.abs(v) <= hi + 1e-6).all() and (np.abs(v).max(0) > 0.999 * hi).all()
        np.testing.assert_allclose(v.std(0), 2 * hi / np.sqrt(12), rtol=0.02)
    _, params = build_env(EnvConfig(start="upright"))
    assert params.upright and not params.hard
    _, params = build_env(EnvConfig(start="hard"))
    assert params.hard and not params.upright


def test_easy_start_distribution():
    v = _starts(False)
    n = len(v)
    mean = np.array([0, 0, np.pi, 0])
    np.testing.assert_array_less(np.abs(v.mean(0) - mean), 5 * 0.2 / np.sqrt(n))
    # se of the sample std = 0.2/sqrt(2n) = 0.001 -> 5 se
    np.testing.assert_allclose(v.std(0), 0.2, atol=0.005)
    assert np.abs(v - mean).max() < 2.0 and np.abs(v - mean).max() > 0.6


# --------------------------------------------------------- jit / vmap parity
def test_jit_vmap_matches_python_loop():
    n, T = 1024, 20
    kr, ka = jax.random.split(jax.random.key(6))
    keys = jax.random.split(kr, n)
    actions = jax.random.uniform(ka, (T, n, 1), minval=-1.5, maxval=1.5)

    @jax.jit
    def batched(keys, actions):
        _, s = jax.vmap(ENV.reset_env, in_axes=(0, None))(keys, P)

        def body(s, a):
            o, s, r, d, _ = jax.vmap(ENV.step_env, in_axes=(None, 0, 0, None))(
                KEY, s, a, P)
            return s, (o, r, d)
        return jax.lax.scan(body, s, actions)[1]

    obs, rew, done = map(np.asarray, batched(keys, actions))
    for i in (0, 511, 1023):
        _, s = ENV.reset_env(keys[i], P)
        for t in range(T):
            o, s, r, d, _ = ENV.step_env(KEY, s, actions[t, i], P)
            np.testing.assert_allclose(obs[t, i], o, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(rew[t, i], r, rtol=1e-5, atol=1e-5)
            assert done[t, i] == bool(d)


# ------------------------------------------------------------------------ make
@pytest.mark.parametrize("name,hard", [("CartPoleSwingUp-v0", True), ("CartPoleSwingUp-hard", True),
                                       ("CartPoleSwingUp-easy", False)])
def test_make_cartpole(name, hard):
    env, params = make(name)
    assert isinstance(env, CartPoleSwingUp)
    assert params.hard is hard and params.max_steps_in_episode == 1000
    assert make(name, friction=0.0)[1].friction == 0.0
    obs, _ = env.reset(KEY, params)
    assert obs.shape == (5,)


def test_make_default_is_hard():
    assert CARTPOLE_NAMES["CartPoleSwingUp-v0"] is None  # fixes no start: env.start chooses
    assert make("CartPoleSwingUp-v0")[1].hard


def test_make_gymnax_env():
    env, params = make("Pendulum-v1", max_speed=4.0)
    assert env.name == "Pendulum-v1" and params.max_speed == 4.0
    obs, s = env.reset(KEY, params)
    out = env.step(KEY, s, jnp.array([0.1]), params)
    assert len(out) == 6 and out[0].shape == (3,)


def test_make_unknown_name():
    with pytest.raises(ConfigError) as err:
        make("NoSuchEnv-v9")
    msg = str(err.value)
    assert "\n" not in msg and "NoSuchEnv-v9" in msg
    assert all(n in msg for n in CARTPOLE_NAMES)


# ---------------------------------------------------------------------- render
def test_render():
    a = render(mk(0.5, 0.0, 0.3, 0.0), P, width=320, height=200)
    assert a.shape == (200, 320, 3) and a.dtype == np.uint8
    assert len(np.unique(a.reshape(-1, 3), axis=0)) >= 3  # not blank
    b = render(mk(0.5, 0.0, np.pi, 0.0), P, width=320, height=200)
    assert (a != b).any(axis=-1).sum() > 50
    # numpy scalars and default params/size work too
    c = render(EnvState(x=np.float32(0.5), x_dot=0.0, theta=np.float32(0.3),
                        theta_dot=0.0, time=0))
    assert c.shape == (400, 600, 3)
    # cart position moves the drawing
    d = render(mk(-1.5, 0.0, 0.3, 0.0), P, width=320, height=200)
    assert (a != d).any()
