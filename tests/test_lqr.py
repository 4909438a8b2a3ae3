"""The LQR balancer: a stable closed loop, balancing in the real (nonlinear) env, and the catch teacher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from pinn_jax.envs import CartPoleSwingUp, EnvParams, EnvState
from pinn_jax.policies import make_policy
from pinn_jax.tools.lqr import CatchWithLQR, LQRPolicy, linearise, lqr_gain


def test_linearisation_matches_a_finite_difference_of_the_step():
    a_mat, b_mat = linearise()
    env, params = CartPoleSwingUp(), EnvParams()
    s, a, _eps = np.array([0.01, -0.02, 0.005, 0.01]), 0.01, 1e-3

    def step(s, a):
        st = EnvState(x=jnp.float32(s[0]), x_dot=jnp.float32(s[1]), theta=jnp.float32(s[2]),
                      theta_dot=jnp.float32(s[3]), time=jnp.array(0, jnp.int32))
        _, n, *_ = env.step_env(jax.random.PRNGKey(0), st, jnp.float32(a), params)
        return np.array([n.x, n.x_dot, n.theta, n.theta_dot], np.float64)

    np.testing.assert_allclose(step(s, a), a_mat @ s + b_mat[:, 0] * a, atol=1e-5)
    # the upright pole is unstable on its own: an eigenvalue outside the unit circle
    assert np.abs(np.linalg.eigvals(a_mat)).max() > 1.0
    # the action's effect at rest, from the equations of motion: ẍ = 4F / (4M - 3m), θ̈ = 6F / (4lM - 3ml)
    p = params
    total = p.masscart + p.masspole
    np.testing.assert_allclose(b_mat[1, 0], 4 * p.force_mag / (4 * total - 3 * p.masspole) * p.dt, rtol=1e-5)
    np.testing.assert_allclose(b_mat[3, 0], 6 * p.force_mag / (4 * p.length * total - 3 * p.masspole * p.length)
                               * p.dt, rtol=1e-5)
    np.testing.assert_allclose(b_mat[[0, 2], 0], 0.0)  # positions move with the old velocities (Euler)


def test_lqr_gain_stabilises_the_linearised_closed_loop():
    a_mat, b_mat = linearise()
    k = lqr_gain()
    assert k.shape == (4,)
    assert np.abs(np.linalg.eigvals(a_mat - b_mat @ k[None, :])).max() < 1.0


def test_no_stable_controller_of_the_summed_features_balances_the_pole():
    """At the upright rest state x, ẋ, sin θ and θ̇ are all 0 (and cos θ is 1 to first order), so a
    permutation-invariant policy whose per-feature states agree there linearises to one filter of their sum
    ``s = x + ẋ + θ + θ̇``. The plant from the action to ``s`` fails the parity interlacing property (an odd
    number of real unstable poles between its real unstable zero and the zero at infinity): no stable
    compensator of ``s`` stabilises it (Youla, Bongiorno & Lu 1974). Balancing needs per-feature states that
    differ at the top (the separation in ``pinn_jax.study.diagnose``), an unstable compensator, or a limit cycle."""
    a_mat, b_mat = linearise()
    c_sum = np.ones((1, 4))
    # invariant zeros: finite generalised eigenvalues of the Rosenbrock pencil [[A, B], [C, 0]] - z [[I, 0], [0, 0]]
    pencil = np.block([[a_mat, b_mat], [c_sum, np.zeros((1, 1))]])
    mass = np.block([[np.eye(4), np.zeros((4, 1))], [np.zeros((1, 5))]])
    zeros = scipy.linalg.eigvals(pencil, mass)
    zeros = zeros[np.isfinite(zeros)]
    real_unstable = lambda v: np.sort(v[(np.abs(v.imag) < 1e-9) & (v.real >= 1.0)].real)
    unstable_zeros = [*real_unstable(zeros), np.inf]  # strictly proper: a zero at infinity
    poles = np.linalg.eigvals(a_mat)
    between = [int(((poles.real > lo) & (poles.real < hi) & (np.abs(poles.imag) < 1e-9)).sum())
               for lo, hi in zip(unstable_zeros, unstable_zeros[1:])]
    assert len(unstable_zeros) >= 2 and any(n % 2 for n in between), (zeros, poles)
    # the simplest such controllers, checked directly: a gain on s plus a term in the previous action
    grid = [(g, r) for g in np.linspace(-20, 20, 201) for r in np.linspace(-0.99, 0.99, 45)]
    radii = []
    for g, r in grid:  # state (x, ẋ, θ, θ̇, u_prev); u = g s + r u_prev
        m = np.zeros((5, 5))
        m[:4, :4], m[:4, 4:], m[4, :4], m[4, 4] = a_mat + g * b_mat @ c_sum, r * b_mat, g * c_sum, r
        radii.append(np.abs(np.linalg.eigvals(m)).max())
    assert min(radii) > 1.02
    # while distinct gains do (the LQR)
    assert np.abs(np.linalg.eigvals(a_mat - b_mat @ lqr_gain()[None, :])).max() < 1.0


def _run(policy, params, state: EnvState, steps: int):
    env, env_params = CartPoleSwingUp(), EnvParams()
    prepared = policy.prepare(params)

    def body(carry, _):
        env_state, pstate, act = carry
        obs = env.get_obs(env_state)
        pstate, act, _ = policy.step(prepared, pstate, obs, act)
        _, env_state, reward, done, _ = env.step_env(jax.random.PRNGKey(0), env_state, act, env_params)
        return (env_state, pstate, act), (reward, done, env_state.theta, env_state.x)

    init = (state, policy.initial_state(5), jnp.zeros((1,), jnp.float32))
    _, out = jax.lax.scan(body, init, None, length=steps)
    return [np.asarray(o) for o in out]


def test_lqr_policy_balances_the_nonlinear_pole_from_a_tilted_start():
    policy = LQRPolicy(tuple(float(g) for g in lqr_gain()))
    start = EnvState(x=jnp.float32(0.5), x_dot=jnp.float32(-0.5), theta=jnp.float32(0.3),
                     theta_dot=jnp.float32(0.5), time=jnp.array(0, jnp.int32))
    reward, done, theta, x = _run(policy, {}, start, 1000)
    assert not done.any()
    assert np.abs(theta[-100:]).max() < 1e-2 and np.abs(x[-100:]).max() < 5e-2  # back to rest at the centre
    assert reward[-100:].min() > 0.999
    # without control the same start falls over
    zero = LQRPolicy((0.0, 0.0, 0.0, 0.0))
    assert np.cos(_run(zero, {}, start, 200)[2]).min() < 0


def test_catch_teacher_plays_the_base_below_the_threshold_and_the_lqr_above():
    base = make_policy("linear")
    base_params = base.init(jax.random.PRNGKey(1), 5)
    gain = tuple(float(g) for g in lqr_gain())
    teacher = CatchWithLQR(base, gain, threshold=0.8)
    lqr = LQRPolicy(gain)
    prev = jnp.zeros((1,), jnp.float32)
    for theta in (0.2, -0.5, 1.0, 2.5, np.pi):
        obs = jnp.array([0.3, -0.2, np.cos(theta), np.sin(theta), 0.7], jnp.float32)
        _, got, _ = teacher.step(teacher.prepare(base_params), teacher.initial_state(5), obs, prev)
        ref = lqr if np.cos(theta) > 0.8 else base
        _, want, _ = ref.step(ref.prepare({} if ref is lqr else base_params), ref.initial_state(5), obs, prev)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    assert teacher.num_params(5) == base.num_params(5)
