"""The training fitness wrapper (pinn_jax.envs.fitness): each knob's shaping, and none at all when neutral."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_dict

from pinn_jax import config as config_lib
from pinn_jax.envs import CartPoleSwingUp, EnvParams, EnvState
from pinn_jax.envs.fitness import KNOBS, Fitness, FitnessWrapper
from pinn_jax.experiment import setup
from pinn_jax.rollout import episode

ENV = CartPoleSwingUp()
P = EnvParams()
KEY = jax.random.key(0)
SHAPED = {"reward_power": 4.0, "fall_after": 100, "fall_credit": 0.5, "cart_only_steps": 75, "start_scale": 0.5,
          "alive_bonus": 0.1}


def shaped(**knobs) -> FitnessWrapper:
    return FitnessWrapper(ENV, Fitness(**knobs))


def test_the_knobs_are_train_keys_neutral_by_default_and_not_env_params():
    assert set(KNOBS) == set(SHAPED)
    train_defaults = config_lib.TrainConfig()
    assert {k: getattr(train_defaults, k) for k in KNOBS} == {k: getattr(Fitness(), k) for k in KNOBS}
    assert not set(KNOBS) & {f.name for f in dataclasses.fields(EnvParams)}  # the env keeps the paper's task
    assert Fitness().shaped() == {} and Fitness().wrap(ENV) is ENV
    assert Fitness(reward_power=4.0, cart_only_steps=0).shaped() == {"reward_power": 4.0}


def _step_jaxpr(env, params) -> str:
    _, state = jax.eval_shape(env.reset_env, KEY, params)
    act = jnp.zeros(env.action_space(params).shape, jnp.float32)
    return str(jax.make_jaxpr(lambda s: env.step_env(KEY, s, act, params))(
        jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), state)))


def test_neutral_knobs_compile_the_papers_step_and_each_knob_adds_a_wrapper(tmp_path):
    def exp(**train):
        return setup(config_lib.from_dict(tiny_dict(tmp_path, env={"start": "hard"}, train=train)))

    plain = exp()
    assert plain.fitness_env == plain.env and type(plain.fitness_env.env.env) is CartPoleSwingUp  # no wrapper
    assert _step_jaxpr(plain.fitness_env, plain.env_params) == _step_jaxpr(plain.env, plain.env_params)
    for knob, value in SHAPED.items():
        train = {knob: value, **({"fall_after": 100} if knob == "fall_credit" else {})}
        e = exp(**train)
        assert isinstance(e.fitness_env.env.env, FitnessWrapper) and e.env == plain.env, knob
        assert getattr(e.fitness_env.env.env.fitness, knob) == value
        if knob != "start_scale":  # the start is not the step
            assert _step_jaxpr(e.fitness_env, e.env_params) != _step_jaxpr(e.env, e.env_params), knob


def test_reward_power_sharpens_the_pole_factor_only_and_one_is_the_papers_reward_exactly():
    n = 4096
    v = jax.random.uniform(jax.random.key(9), (n, 4), minval=jnp.array([-2.3, -5, -4, -5.0]),
                           maxval=jnp.array([2.3, 5, 4, 5.0]))
    s0 = EnvState(x=v[:, 0], x_dot=v[:, 1], theta=v[:, 2], theta_dot=v[:, 3], time=jnp.zeros(n, jnp.int32))
    step = lambda env: jax.jit(jax.vmap(lambda s: env.step_env(KEY, s, jnp.float32(0.3), P)))  # noqa: E731
    _, s1, r1, _, _ = step(ENV)(s0)
    _, _, r_one, _, _ = step(shaped(reward_power=1.0))(s0)
    _, _, r4, _, _ = step(shaped(reward_power=4.0))(s0)
    np.testing.assert_array_equal(r_one, r1)  # the default is the paper's reward, bit for bit
    pole = (np.cos(np.asarray(s1.theta, np.float64)) + 1) / 2
    cart = np.cos(np.asarray(s1.x, np.float64) / 2.4 * np.pi / 2)
    np.testing.assert_allclose(r4, pole**4 * cart, atol=1e-6)
    near_top = np.cos(np.asarray(s1.theta)) > 0.999
    assert near_top.any() and (~near_top).any()
    np.testing.assert_allclose(np.asarray(r4)[near_top], np.asarray(r1)[near_top], atol=3e-3)  # the top keeps ~1
    assert (np.asarray(r4)[~near_top] <= np.asarray(r1)[~near_top] + 1e-7).all()


def test_fall_termination_only_after_fall_after_steps_and_never_by_default():
    down = EnvState(x=jnp.float32(0.0), x_dot=jnp.float32(0.0), theta=jnp.float32(3.0), theta_dot=jnp.float32(0.0),
                    time=jnp.int32(0))
    up = down.replace(theta=jnp.float32(0.2))
    fall = shaped(fall_after=100)
    step = lambda env, s: env.step_env(KEY, s, jnp.float32(0.0), P)  # noqa: E731
    ended = lambda env, s: bool(jax.jit(step, static_argnums=0)(env, s)[3])  # noqa: E731
    assert not ended(ENV, down) and not ended(ENV, down.replace(time=jnp.int32(900)))  # the paper: never
    assert not ended(fall, down.replace(time=jnp.int32(99)))  # step 100 is not after 100 steps
    assert ended(fall, down.replace(time=jnp.int32(100)))  # the pole below horizontal at step 101
    assert not ended(fall, up.replace(time=jnp.int32(500)))  # an upright pole goes on
    assert ended(fall, up.replace(x=jnp.float32(2.4), x_dot=jnp.float32(1.0)))  # the track still ends it
    info = jax.jit(step, static_argnums=0)(fall, down.replace(time=jnp.int32(100)))[4]
    assert float(info["discount"]) == 0.0  # the fall is an ending like the track's


def test_fall_credit_pays_the_steps_left_when_the_fall_ends_an_episode_on_the_track():
    down = EnvState(x=jnp.float32(0.5), x_dot=jnp.float32(0.0), theta=jnp.float32(3.0), theta_dot=jnp.float32(0.0),
                    time=jnp.int32(300))
    step = jax.jit(lambda env, s: env.step_env(KEY, s, jnp.float32(0.0), P)[2:4], static_argnums=0)
    fall = shaped(fall_after=100, episode_steps=500)
    credit = shaped(fall_after=100, episode_steps=500, fall_credit=0.25)
    r, done = step(fall, down)
    r_credit, done_credit = step(credit, down)
    assert bool(done) and bool(done_credit)
    np.testing.assert_allclose(float(r_credit), float(r) + 0.25 * (500 - 301), rtol=1e-6)  # 199 steps were left
    off = down.replace(x=jnp.float32(2.4), x_dot=jnp.float32(1.0))  # the cart leaves the track as the pole is down
    assert bool(step(fall, off)[1]) and float(step(credit, off)[0]) == float(step(fall, off)[0])  # a lost cart: none
    early = down.replace(time=jnp.int32(50))  # before fall_after: no ending, no credit
    assert float(step(credit, early)[0]) == float(step(fall, early)[0])


def test_cart_only_steps_pay_the_cart_factor_alone_through_step_n_then_the_paper_reward():
    tilted = EnvState(x=jnp.float32(1.2), x_dot=jnp.float32(0.0), theta=jnp.float32(2.0), theta_dot=jnp.float32(0.0),
                      time=jnp.int32(0))
    step = jax.jit(lambda env, s: env.step_env(KEY, s, jnp.float32(0.0), P)[2], static_argnums=0)
    cart_only = shaped(cart_only_steps=75)
    cart = float(np.cos(np.float32(1.2) / 2.4 * np.pi / 2))
    paper = float(step(ENV, tilted))
    assert paper < 0.5 * cart  # the hanging pole's factor is small
    for t in (0, 40, 74):  # steps 1 .. 75 pay the cart factor only
        r = float(step(cart_only, tilted.replace(time=jnp.int32(t))))
        np.testing.assert_allclose(r, cart, rtol=1e-6)
    for t in (75, 500):  # from step 76 on, the paper's reward bit for bit
        later = tilted.replace(time=jnp.int32(t))
        assert float(step(cart_only, later)) == float(step(ENV, later))


@pytest.mark.parametrize("start", ["easy", "upright"])
def test_start_scale_is_the_hard_starts_only(start):
    p = P.replace(hard=start == "hard", upright=start == "upright")
    keys = jax.random.split(jax.random.key(5), 64)
    reset = lambda env: jax.vmap(lambda k: env.reset_env(k, p))(keys)[1]  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(reset(shaped(start_scale=0.5))),
                                                    jax.tree.leaves(reset(ENV))))


def test_alive_bonus_pays_every_step_taken_on_any_env_and_leaves_the_held_out_env_bare(tmp_path):
    """Breakout-MinAtar ends when the ball is missed: the training return is the game's plus b per step played."""
    data = tiny_dict(tmp_path, env={"name": "Breakout-MinAtar", "max_steps": 200, "patch_size": [1, 10]},
                     policy={"name": "vision_attention"}, train={"alive_bonus": 0.25})
    data["env"].pop("start", None)
    exp = setup(config_lib.from_dict(data))
    assert isinstance(exp.fitness_env.env.env, FitnessWrapper) and not isinstance(exp.env.env.env, FitnessWrapper)
    params = exp.policy.init(jax.random.key(1), exp.env.observation_space(exp.env_params).shape[-1])
    run = jax.jit(jax.vmap(lambda env, k: episode(exp.policy, env, exp.env_params, params, k, 200),
                           in_axes=(None, 0)), static_argnums=0)
    keys = jax.random.split(jax.random.key(2), 8)
    bare, shaped_ = run(exp.env, keys), run(exp.fitness_env, keys)
    assert int(bare.length.min()) < 200  # some episodes end early: the bonus counts the steps, not max_steps
    np.testing.assert_allclose(shaped_.ret, bare.ret + 0.25 * bare.length, rtol=1e-6)
    with pytest.raises(config_lib.ConfigError, match="'train.reward_power' shapes the swing-up's fitness only"):
        setup(config_lib.from_dict({**data, "train": {**data["train"], "reward_power": 2.0}}))
    with pytest.raises(config_lib.ConfigError, match="'train.alive_bonus' must be finite and >= 0, got -1"):
        config_lib.from_dict({**data, "train": {**data["train"], "alive_bonus": -1.0}})
