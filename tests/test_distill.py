"""Behaviour cloning (DAgger): recorded episodes, exact replay of recurrent students, learning, errors."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinn_jax import config as config_lib
from pinn_jax.config import EnvConfig
from pinn_jax.tools.distill import distill, imitation_loss, labelled_episode, main
from pinn_jax.policies import make_policy
from pinn_jax.errors import ModelError, TrainingError
from pinn_jax.experiment import build_env
from pinn_jax.rollout import episode

from conftest import tiny_dict

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

AN = make_policy("attention_neuron")
LINEAR = make_policy("linear")


def _env(steps=40):
    return build_env(EnvConfig(start="hard", max_steps=steps))


def test_teacher_episode_is_recorded_with_its_own_actions_as_labels():
    env, env_params = _env()
    teacher = LINEAR.init(jax.random.PRNGKey(1), 5)
    key = jax.random.PRNGKey(7)
    eps = labelled_episode(AN, AN.init(jax.random.PRNGKey(2), 5), LINEAR, teacher, env, env_params, key, 40,
                           jnp.asarray(True))
    ref = episode(LINEAR, env, env_params, teacher, key, 40, record=True)
    valid = np.asarray(eps.valid)
    assert valid.sum() == int(ref.length)
    np.testing.assert_allclose(np.asarray(eps.obs)[valid], np.asarray(ref.trajectory["obs"])[valid], atol=1e-5)
    np.testing.assert_allclose(np.asarray(eps.label)[valid], np.asarray(ref.trajectory["action"])[valid],
                               atol=1e-5)
    # the previous action fed at step t is the action executed at t - 1
    np.testing.assert_array_equal(np.asarray(eps.prev_action)[0], 0.0)
    np.testing.assert_allclose(np.asarray(eps.prev_action)[1:][valid[1:]], np.asarray(eps.label)[:-1][valid[1:]],
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["mse", "bce"])
def test_replay_reproduces_a_recurrent_students_actions_exactly(kind):
    """A student labelled by itself has zero loss: training replays its LSTM state step for step."""
    env, env_params = _env()
    params = AN.init(jax.random.PRNGKey(3), 5)
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    eps = jax.vmap(lambda k: labelled_episode(AN, params, AN, params, env, env_params, k, 40,
                                              jnp.asarray(False)))(keys)
    assert abs(float(imitation_loss(AN, params, eps, kind))) < 1e-5
    other = AN.init(jax.random.PRNGKey(5), 5)
    assert float(imitation_loss(AN, other, eps, kind)) > 1e-3  # and the loss does see a different student


def test_cross_entropy_keeps_a_gradient_where_the_action_saturates_on_the_wrong_side():
    env, env_params = _env()
    teacher = {"params": {"out": {"kernel": jnp.zeros((5, 1)), "bias": jnp.array([20.0])}}}  # always +1
    student = {"params": {"out": {"kernel": jnp.zeros((5, 1)), "bias": jnp.array([-5.0])}}}  # about -1
    eps = jax.vmap(lambda k: labelled_episode(LINEAR, student, LINEAR, teacher, env, env_params, k, 20,
                                              jnp.asarray(False)))(jax.random.split(jax.random.PRNGKey(0), 2))
    grad = {k: jax.grad(lambda p: imitation_loss(LINEAR, p, eps, k))(student)["params"]["out"]["bias"][0]
            for k in ("mse", "bce")}
    assert grad["bce"] < 0 and grad["mse"] < 0  # both push the bias up, towards the teacher's +1
    assert abs(grad["bce"]) > 100 * abs(grad["mse"])  # but the squared error through tanh barely moves


def test_linear_student_learns_a_linear_teacher(tmp_path):
    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 60}))
    teacher = {"params": {"out": {"kernel": jnp.array([[0.3], [-0.8], [0.5], [1.2], [-0.6]]),
                                  "bias": jnp.array([0.1])}}}
    assert ravel_pytree(teacher)[0].size == 6
    params, rows = distill(cfg, LINEAR, teacher, tmp_path / "out", rounds=3, episodes=8, updates=150, batch=8,
                           learning_rate=0.05, eval_episodes=8, log=lambda s: None)
    assert rows[0]["loss"] > rows[-1]["loss"] and rows[-1]["loss"] < 1e-3
    saved = np.load(tmp_path / "out" / "student.npz")["params"]
    np.testing.assert_array_equal(saved, np.asarray(ravel_pytree(params)[0]))
    per_round = sorted((tmp_path / "out" / "rounds").iterdir())
    assert [f.name for f in per_round] == ["000.npz", "001.npz", "002.npz"]
    np.testing.assert_array_equal(np.load(per_round[-1])["params"], saved)
    assert not np.array_equal(np.load(per_round[0])["params"], saved)
    assert (tmp_path / "out" / "distill.csv").read_text().splitlines()[0].startswith("round,episodes,loss")


@pytest.mark.parametrize("extra,message", [
    (["--set", "train.shuffle=true"], "train.shuffle, train.shuffle_every and train.num_noise must be off"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--lqr-above", "1.5"], "--lqr-above must lie in (-1, 1), got 1.5"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    student = tmp_path / "student.yaml"
    import yaml
    student.write_text(yaml.safe_dump(tiny_dict(tmp_path / "unused")))
    argv = ["--teacher", "pretrained:cartpole_linear", "--student", str(student), "--out", str(tmp_path / "o")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_non_empty_output_directory(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "student.npz").write_bytes(b"keep me")
    assert main(["--teacher", "official", "--student", str(CONFIGS / "cartpole_pi_short.yaml"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "o" / "student.npz").read_bytes() == b"keep me"


def test_student_can_start_from_saved_parameters(tmp_path):
    """Started from the teacher's own parameters, the student already imitates it: zero loss, no change."""
    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 60}))
    teacher = LINEAR.init(jax.random.PRNGKey(9), 5)
    flat = np.asarray(ravel_pytree(teacher)[0])
    np.savez(tmp_path / "init.npz", params=flat)
    params, rows = distill(cfg, LINEAR, teacher, tmp_path / "out", rounds=2, episodes=4, updates=3, batch=4,
                           eval_episodes=4, init=tmp_path / "init.npz", log=lambda s: None)
    assert max(r["loss"] for r in rows) < 1e-10
    np.testing.assert_allclose(np.asarray(ravel_pytree(params)[0]), flat, atol=1e-7)
    np.savez(tmp_path / "short.npz", params=flat[:-1])
    with pytest.raises(config_lib.ConfigError, match="holds 5 parameters, this policy has 6"):
        distill(cfg, LINEAR, teacher, tmp_path / "out2", rounds=1, init=tmp_path / "short.npz", log=lambda s: None)


def test_a_diverging_student_stops_with_a_training_error_and_writes_nothing_non_finite(tmp_path):

    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 30}))
    teacher = LINEAR.init(jax.random.PRNGKey(9), 5)
    with pytest.raises(TrainingError, match=r"imitation loss is not finite in round 0; lower --lr \(now inf\)"):
        distill(cfg, LINEAR, teacher, tmp_path / "out", rounds=2, episodes=4, updates=2, batch=4, eval_episodes=4,
                learning_rate=float("inf"), log=lambda s: None)
    assert not (tmp_path / "out" / "student.npz").exists()  # nothing non-finite was written


def test_a_chosen_round_of_a_student_ships_and_loads_with_its_config(tmp_path, monkeypatch):
    from pinn_jax.models import pretrained

    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 30}))
    teacher = LINEAR.init(jax.random.PRNGKey(2), 5)
    distill(cfg, LINEAR, teacher, tmp_path / "out", rounds=3, episodes=4, updates=5, batch=4, eval_episodes=4,
            learning_rate=0.05, log=lambda s: None)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    pretrained.export_student(tmp_path / "out", "demo", 1, notes={"check": []}, dest=pkg)
    monkeypatch.setattr(pretrained, "HERE", pkg)
    policy, params, loaded_cfg = pretrained.load("demo")
    np.testing.assert_array_equal(np.asarray(ravel_pytree(params)[0]),
                                  np.load(tmp_path / "out" / "rounds" / "001.npz")["params"])
    meta = pretrained.info("demo")
    assert meta["distill_rounds"] == 2 and meta["params"] == "distillation round 1" and meta["check"] == []
    assert loaded_cfg.policy == cfg.policy
    with pytest.raises(ModelError, match=r"has no round 7 \(rounds 0 to 2\)"):
        pretrained.export_student(tmp_path / "out", "demo2", 7, dest=pkg)
    assert not (pkg / "demo2.npz").exists()
    assert pretrained.main(["export-student", str(tmp_path), "x"]) == 2  # not a distillation directory


def test_evaluate_loads_a_round_file_with_the_config_one_directory_up(tmp_path):
    from pinn_jax.models import load_model

    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 30}))
    distill(cfg, LINEAR, LINEAR.init(jax.random.PRNGKey(3), 5), tmp_path / "out", rounds=2, episodes=4, updates=3,
            batch=4, eval_episodes=4, learning_rate=0.05, log=lambda s: None)
    for f in (tmp_path / "out" / "rounds" / "000.npz", tmp_path / "out" / "student.npz"):
        model = load_model(str(f))
        np.testing.assert_array_equal(np.asarray(ravel_pytree(model.params)[0]), np.load(f)["params"])
        assert model.policy == LINEAR and model.env_cfg == cfg.env
    lone = tmp_path / "lone"
    lone.mkdir()
    np.savez(lone / "p.npz", params=np.zeros(6, np.float32))
    with pytest.raises(ModelError, match="no config.yaml beside it or one directory up"):
        load_model(str(lone / "p.npz"))
    np.savez(tmp_path / "out" / "wrong.npz", params=np.zeros(7, np.float32))
    with pytest.raises(ModelError, match=r"wrong.npz holds 7 parameters, this policy has 6"):
        load_model(str(tmp_path / "out" / "wrong.npz"))


def test_held_out_returns_are_the_trainers_held_out_episodes(tmp_path):
    from pinn_jax.rollout import member_returns
    from pinn_jax.training.trainer import held_out_keys

    cfg = config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"}, env={"start": "hard", "max_steps": 40}))
    params, rows = distill(cfg, LINEAR, LINEAR.init(jax.random.PRNGKey(4), 5), tmp_path / "out", rounds=1,
                           episodes=4, updates=3, batch=4, eval_episodes=6, learning_rate=0.05, log=lambda s: None)
    env, env_params = build_env(cfg.env)
    want = np.asarray(member_returns(LINEAR, env, env_params, params, held_out_keys(cfg.seed, 6), 40))
    np.testing.assert_allclose(rows[-1]["return_mean"], want.mean(), rtol=1e-5)
    np.testing.assert_allclose(rows[-1]["return_std"], want.std(), rtol=1e-5)
