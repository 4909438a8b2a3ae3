"""Every vector-observation gymnax env: actions mapped from the policy's outputs (Discrete -> argmax of n
outputs, Box -> tanh outputs scaled to [low, high]), training end to end, permutation invariance off the
swing-up, evaluation in the model's own env, and a one-line refusal of non-vector observations."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from pinn_jax import config as config_lib
from pinn_jax.envs import ActionSpec, make
from pinn_jax.errors import ConfigError
from pinn_jax.experiment import action_spec, build_env, setup
from pinn_jax.models import load_model
from pinn_jax.study import evaluate as ev
from pinn_jax.train import main as train_main
from pinn_jax.train import train
from pinn_jax.training.trainer import make_trainer

CLASSIC = {"CartPole-v1": 500, "Acrobot-v1": 500, "Pendulum-v1": 200, "MountainCarContinuous-v0": 999,
           "MountainCar-v0": 200}


def cfg_for(name: str, policy: str = "mlp", **train_cfg) -> config_lib.Config:
    return config_lib.from_dict({
        "seed": 1, "env": {"name": name, "max_steps": CLASSIC.get(name, 1000)}, "policy": {"name": policy},
        "strategy": {"name": "CMA_ES", "population_size": 8, "sigma_init": 0.3},
        "train": {"generations": 2, "rollouts": 2, "log_every": 1, "checkpoint_every": 2, **train_cfg}})


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_action_spec_matches_the_env_space_and_stays_in_bounds(name):
    env, params = make(name)
    space = env.action_space(params)
    spec = ActionSpec.from_space(space)
    outputs = jax.random.uniform(jax.random.PRNGKey(0), (256, spec.dim), minval=-1.0, maxval=1.0)
    actions = np.asarray(jax.vmap(spec.decode)(outputs))
    if isinstance(space, spaces.Discrete):
        assert spec.discrete and spec.dim == space.n
        assert actions.dtype == np.int32 and actions.shape == (256,)
        assert set(np.unique(actions)) == set(range(space.n))  # every action reachable, none outside
        np.testing.assert_array_equal(actions, np.argmax(np.asarray(outputs), axis=1))
    else:
        low, high = float(np.min(space.low)), float(np.max(space.high))
        assert not spec.discrete and actions.shape == (256, *space.shape)
        assert actions.min() >= low and actions.max() <= high
        # the whole range is used: -1 -> low, +1 -> high (Pendulum's torque is [-2, 2], not half of it)
        np.testing.assert_allclose(np.asarray(spec.decode(jnp.ones(spec.dim))), np.full(space.shape, high))
        np.testing.assert_allclose(np.asarray(spec.decode(-jnp.ones(spec.dim))), np.full(space.shape, low))


def test_unit_box_actions_are_passed_through_bit_for_bit():
    spec = ActionSpec.from_space(make("CartPoleSwingUp-v0")[0].action_space(None))
    a = jax.random.uniform(jax.random.PRNGKey(3), (1000, 1), minval=-1, maxval=1)
    np.testing.assert_array_equal(np.asarray(jax.vmap(spec.decode)(a)), np.asarray(a))


@pytest.mark.parametrize("policy", ["attention_neuron", "mlp"])
def test_discrete_policies_emit_one_hot_actions_of_the_right_size(policy):
    exp = setup(cfg_for("Acrobot-v1", policy))
    assert exp.policy.act_dim == 3 and action_spec(exp.env).discrete
    params = exp.policy.init(jax.random.PRNGKey(0), exp.obs_dim)
    prepared = exp.policy.prepare(params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (20, exp.obs_dim))
    state = jax.tree.map(lambda x: jnp.broadcast_to(x, (20, *x.shape)), exp.policy.initial_state(exp.obs_dim))
    _, act, _ = jax.vmap(exp.policy.step, in_axes=(None, 0, 0, None))(prepared, state, obs, jnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(act).sum(1), np.ones(20))
    assert set(np.unique(np.asarray(act))) <= {0.0, 1.0}


def test_swingup_policies_keep_their_size():
    assert setup(config_lib.load("cartpole_pi")).num_params == 913
    assert setup(config_lib.load("cartpole_mlp")).num_params == 385


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_a_few_generations_train_on_every_classic_env(name):
    tr = make_trainer(cfg_for(name))
    state, metrics = tr.run(tr.init(), 2)
    fitness = np.asarray(metrics["fitness_mean"])
    assert np.isfinite(fitness).all() and int(state.generation) == 2
    lo, hi = {"CartPole-v1": (0, 500), "Acrobot-v1": (-500, 0), "MountainCar-v0": (-200, 0),
              "Pendulum-v1": (-16.3 * 200, 0), "MountainCarContinuous-v0": (-0.1 * 999, 100)}[name]
    assert (fitness >= lo).all() and (fitness <= hi).all(), fitness


def test_attention_neuron_is_permutation_invariant_on_cartpole_v1():
    exp = setup(cfg_for("CartPole-v1", "attention_neuron"))
    params = exp.policy.init(jax.random.PRNGKey(5), exp.obs_dim)
    prepared = exp.policy.prepare(params)
    obs = jnp.asarray([0.03, -0.4, 0.05, 0.7])
    prev = jnp.asarray([1.0, 0.0])
    _, logits_like, _ = exp.policy.step(prepared, exp.policy.initial_state(4), obs, prev)
    for perm in ([3, 2, 1, 0], [1, 3, 0, 2]):
        _, act, _ = exp.policy.step(prepared, exp.policy.initial_state(4), obs[jnp.asarray(perm)], prev)
        np.testing.assert_array_equal(np.asarray(act), np.asarray(logits_like))


def test_evaluate_takes_the_models_own_env(tmp_path, capsys):
    cfg = cfg_for("Pendulum-v1", "mlp")
    cfg = config_lib.from_dict({**cfg.to_dict(), "run_dir": str(tmp_path / "run")})
    train(cfg, progress=False)
    model = load_model(str(tmp_path / "run"))
    assert model.env_cfg.name == "Pendulum-v1" and model.env_cfg.max_steps == 200
    assert ev.main([str(tmp_path / "run"), "--episodes", "3", "--shuffle-every", "--noise", "0",
                    "--out", str(tmp_path / "eval")]) == 0
    import json

    meta = json.loads((tmp_path / "eval" / "report.json").read_text())["meta"]
    assert meta["env"]["name"] == "Pendulum-v1" and meta["env"]["max_steps"] == 200
    out = capsys.readouterr()
    assert "Pendulum-v1, max 200 steps" in out.out and "hard start" not in out.out
    cell = json.loads((tmp_path / "eval" / "report.json").read_text())["results"][str(tmp_path / "run")]["no_shuffle"]
    assert -16.3 * 200 <= cell["mean"] <= 0  # 200-step Pendulum returns, not 1000-step ones


def test_non_vector_observations_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"Breakout-MinAtar observes arrays of shape \(10, 10, 4\)"):
        build_env(config_lib.EnvConfig(name="Breakout-MinAtar"))
    rc = train_main(["--config", "quick", "--set", "env.name=Breakout-MinAtar", "--run-dir", str(tmp_path / "r"),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "vector-observation envs only" in err
    assert not (tmp_path / "r").exists()


def test_the_cross_env_study_groups_by_env_and_shows_the_paper_claim(tmp_path, capsys):
    from pinn_jax.study import across_envs as study

    specs = ["pretrained:cartpole_v1_pi", "pretrained:cartpole_v1_mlp", "pretrained:mountaincar_continuous_pi"]
    assert study.main([*specs, "--episodes", "8", "--conditions", "no_shuffle", "shuffle", "noise_2",
                       "--out", str(tmp_path / "s")]) == 0
    result = json.loads((tmp_path / "s" / "study.json").read_text())
    assert list(result) == ["CartPole-v1, max 500 steps", "MountainCarContinuous-v0, max 999 steps"]
    cart = result["CartPole-v1, max 500 steps"]["results"]
    an, mlp = cart["pretrained:cartpole_v1_pi"], cart["pretrained:cartpole_v1_mlp"]
    assert an["shuffle"]["mean"] == pytest.approx(an["no_shuffle"]["mean"], rel=0.05) and an["shuffle"]["mean"] > 450
    assert mlp["no_shuffle"]["mean"] == 500.0 and mlp["shuffle"]["mean"] < 400  # the MLP needs its feature order
    assert mlp["noise_2"]["status"] == "n/a" and an["noise_2"]["status"] == "ok"
    table = (tmp_path / "s" / "study.md").read_text()
    assert table.count("| CartPole-v1, max 500 steps |") == 2 and " ± " in table
    assert (tmp_path / "s" / "study.png").stat().st_size > 10_000


def test_only_vector_and_image_envs_are_offered_and_the_others_are_refused_unbuilt():
    """``names()`` (the unknown-env error's list) holds exactly the envs whose observations are flat vectors or
    (H, W, C) frames (those with env.patch_size); ``make`` still builds the others, and a config naming one is
    refused before it is built (MNISTBandit-bsuite would download its data set)."""
    import gymnax

    from pinn_jax.envs import NOT_VECTOR, names

    offered = names()
    assert set(NOT_VECTOR) <= set(gymnax.registered_envs) and not set(NOT_VECTOR) & set(offered)
    assert "MNISTBandit-bsuite" not in offered and "Catch-bsuite" not in offered and "Reacher-misc" in offered
    assert "Pong-misc" in offered and "Breakout-MinAtar" in offered
    for name in gymnax.registered_envs:
        if name == "MNISTBandit-bsuite":
            continue
        env, params = make(name)
        shape = tuple(env.observation_space(params).shape)
        assert (len(shape) in (1, 3)) == (name in offered), (name, shape)
        if name in NOT_VECTOR:
            assert f"shape {shape}" in NOT_VECTOR[name]
    with pytest.raises(ConfigError, match="MNISTBandit-bsuite observes MNIST images"):
        build_env(config_lib.EnvConfig(name="MNISTBandit-bsuite"))


def test_training_says_what_it_starts_and_what_another_env_keeps_from_the_base_config(tmp_path, capsys):
    """Switching env with --set keeps the base config's other settings: one line says which; the run's first line
    names policy, env (and an episode limit other than the env's own), strategy, population and run directory;
    then ``compiling…`` and, without a bar, the first status line at once."""
    import re

    import yaml
    from conftest import tiny_dict

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_dict("runs/unused")))  # a swing-up config (easy start, 50 steps, linear)
    run = tmp_path / "run"
    assert train_main(["--config", str(base), "--set", "env.name=Pendulum-v1", "--set", "env.start=hard",
                       "--out", str(run), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()  # what a run says goes to stdout, errors to stderr
    assert lines[0] == (f"note: env.name Pendulum-v1 replaces CartPoleSwingUp-v0; the rest comes from {base}: "
                        f"env.max_steps 50, policy linear, CMA_ES population 8 × 2 rollouts, 3 generations "
                        f"(change any with --set)")
    assert re.fullmatch(r"training \w+Policy \(4 parameters\) on Pendulum-v1, max 50 steps \(env.max_steps; "
                        r"Pendulum-v1's own limit is 200\) with CMA_ES, population 8 × 2 rollouts of 50 steps, "
                        rf"3 generations; run directory {re.escape(str(run))}", lines[1]), lines[1]
    assert lines[2] == "gen 0/3  compiling…" and lines[3].startswith("gen 1/3  best ")  # not after 30 s
