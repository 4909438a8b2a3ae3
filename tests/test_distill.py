"""Behaviour cloning (DAgger): recorded episodes, exact replay of recurrent students, learning, errors."""

from __future__ import annotations

import dataclasses
import pathlib
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import tiny_dict
from jax.flatten_util import ravel_pytree

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import DistillConfig, EnvConfig
from pinn_jax.errors import ModelError, TrainingError
from pinn_jax.experiment import build_env
from pinn_jax.policies import make_policy
from pinn_jax.rollout import episode
from pinn_jax.tools import distill as distill_module
from pinn_jax.tools.distill import OPTIONS, distill, imitation_loss, labelled_episode, main

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

AN = make_policy("attention_neuron")
LINEAR = make_policy("linear")


def _env(steps=40):
    return build_env(EnvConfig(start="hard", max_steps=steps))


def _teacher(tmp_path, params) -> str:
    """A linear swing-up teacher on disk, as a model spec: its flat parameters with a config.yaml beside them."""
    d = tmp_path / "teacher"
    d.mkdir(exist_ok=True)
    artifacts.write_config(d, tiny_dict(d, policy={"name": "linear"}, env={"start": "hard"}))
    return str(artifacts.save_flat(d / "teacher.npz", ravel_pytree(params)[0]))


def _cfg(tmp_path, teacher, max_steps, **distill_keys) -> config_lib.Config:
    """The tiny linear student on the hard swing-up, distilled from the linear ``teacher`` with ``distill_keys``."""
    return config_lib.from_dict(tiny_dict(tmp_path, policy={"name": "linear"},
                                          env={"start": "hard", "max_steps": max_steps},
                                          distill={"teacher": _teacher(tmp_path, teacher), **distill_keys}))


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
    teacher = {"params": {"out": {"kernel": jnp.array([[0.3], [-0.8], [0.5], [1.2], [-0.6]]),
                                  "bias": jnp.array([0.1])}}}
    assert ravel_pytree(teacher)[0].size == 6
    cfg = _cfg(tmp_path, teacher, 60, rounds=3, episodes=8, updates=150, batch=8, learning_rate=0.05, eval_episodes=8)
    params, rows = distill(cfg, tmp_path / "out", log=lambda s: None)
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
    (["--rounds", "0"], "config key 'distill.rounds' must be >= 1, got 0"),
    (["--set", "distill.batch=0"], "config key 'distill.batch' must be >= 1, got 0"),
    (["--lr", "0"], "config key 'distill.learning_rate' must be a finite number > 0, got 0.0"),
    (["--lr", "inf"], "config key 'distill.learning_rate' must be a finite number > 0, got inf"),
    (["--set", "distill.loss=l1"], "config key 'distill.loss' must be one of mse, bce, got 'l1'"),
    (["--lqr-above", "1.5"], "config key 'distill.lqr_above' must lie in (-1, 1) or be null, got 1.5"),
    (["--lqr-above", "nan"], "config key 'distill.lqr_above' must lie in (-1, 1) or be null, got nan"),
    (["--lqr-above", "0.8", "--set", "env.name=CartPole-v1", "--set", "env.start=hard", "--teacher",
      "pretrained:cartpole_v1_mlp"],
     "config key 'distill.lqr_above' needs a cart-pole swing-up env, got 'CartPole-v1'"),
    (["--init", "pretrained:"], "config key 'distill.init' must be 'random', 'zeros', a .npz file"),
    (["--teacher", " "], "config key 'distill.teacher' must be a run directory, a .npz file"),
    (["--set", "distill.teacher=null"], "config key 'distill.teacher' is not set: name the teacher with --teacher"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    student = tmp_path / "student.yaml"
    teacher = {"teacher": "pretrained:cartpole_linear"}
    student.write_text(yaml.safe_dump(tiny_dict(tmp_path / "unused", distill=teacher)))
    argv = ["--student", str(student), "--out", str(tmp_path / "o")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_non_empty_output_directory(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "student.npz").write_bytes(b"keep me")
    assert main(["--teacher", "pretrained:cartpole_mlp", "--student", str(CONFIGS / "cartpole_pi_short.yaml"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "o" / "student.npz").read_bytes() == b"keep me"


def test_student_can_start_from_saved_parameters(tmp_path):
    """Started from the teacher's own parameters, the student already imitates it: zero loss, no change."""
    teacher = LINEAR.init(jax.random.PRNGKey(9), 5)
    flat = np.asarray(ravel_pytree(teacher)[0])
    np.savez(tmp_path / "init.npz", params=flat)
    cfg = _cfg(tmp_path, teacher, 60, rounds=2, episodes=4, updates=3, batch=4, eval_episodes=4,
               init=str(tmp_path / "init.npz"))
    params, rows = distill(cfg, tmp_path / "out", log=lambda s: None)
    assert max(r["loss"] for r in rows) < 1e-10
    np.testing.assert_allclose(np.asarray(ravel_pytree(params)[0]), flat, atol=1e-7)
    np.savez(tmp_path / "short.npz", params=flat[:-1])
    short = dataclasses.replace(cfg.distill, rounds=1, init=str(tmp_path / "short.npz"))
    with pytest.raises(config_lib.ConfigError, match="holds 5 parameters, this policy has 6"):
        distill(dataclasses.replace(cfg, distill=short), tmp_path / "out2", log=lambda s: None)


def test_a_non_finite_loss_stops_with_a_training_error_and_writes_nothing_non_finite(tmp_path, monkeypatch):
    """A loss that turns NaN in the first round stops the run (a NaN teacher itself is refused when read)."""
    monkeypatch.setattr(distill_module, "imitation_loss",
                        lambda student, p, mb, loss: jnp.nan * sum(x.sum() for x in jax.tree.leaves(p)))
    teacher = LINEAR.init(jax.random.PRNGKey(9), 5)
    cfg = _cfg(tmp_path, teacher, 30, rounds=2, episodes=4, updates=2, batch=4, eval_episodes=4, learning_rate=0.5)
    with pytest.raises(TrainingError, match=r"imitation loss is not finite in round 0; lower distill.learning_rate "
                                            r"\(--lr, now 0.5\)"):
        distill(cfg, tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out" / "student.npz").exists()  # nothing non-finite was written


def test_a_chosen_round_of_a_student_ships_and_loads_with_its_config(tmp_path, monkeypatch):
    from pinn_jax.models import pretrained

    cfg = _cfg(tmp_path, LINEAR.init(jax.random.PRNGKey(2), 5), 30, rounds=3, episodes=4, updates=5, batch=4,
               eval_episodes=4, learning_rate=0.05)
    distill(cfg, tmp_path / "out", log=lambda s: None)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    pretrained.export_student(tmp_path / "out", "demo", 1, notes={"check": []}, dest=pkg)
    monkeypatch.setattr(artifacts, "SHIPPED_DIR", pkg)  # where pretrained.load finds agents
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

    cfg = _cfg(tmp_path, LINEAR.init(jax.random.PRNGKey(3), 5), 30, rounds=2, episodes=4, updates=3, batch=4,
               eval_episodes=4, learning_rate=0.05)
    distill(cfg, tmp_path / "out", log=lambda s: None)
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

    cfg = _cfg(tmp_path, LINEAR.init(jax.random.PRNGKey(4), 5), 40, rounds=1, episodes=4, updates=3, batch=4,
               eval_episodes=6, learning_rate=0.05)
    params, rows = distill(cfg, tmp_path / "out", log=lambda s: None)
    env, env_params = build_env(cfg.env)
    want = np.asarray(member_returns(LINEAR, env, env_params, params, held_out_keys(cfg.seed, 6), 40))
    np.testing.assert_allclose(rows[-1]["return_mean"], want.mean(), rtol=1e-5)
    np.testing.assert_allclose(rows[-1]["return_std"], want.std(), rtol=1e-5)


def test_a_distillation_reruns_bit_for_bit_from_its_config_yaml(tmp_path):
    """Options and ``--set distill.KEY`` land in OUT/config.yaml's distill section; ``--config`` on it alone
    makes the same student, every round."""
    student = tmp_path / "student.yaml"
    student.write_text(yaml.safe_dump(tiny_dict(tmp_path / "unused", env={"start": "hard", "max_steps": 30})))
    teacher = _teacher(tmp_path, LINEAR.init(jax.random.PRNGKey(5), 5))
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["--teacher", teacher, "--student", str(student), "--out", str(first), "--rounds", "2",
                 "--episodes", "4", "--updates", "3", "--batch", "4", "--lr", "0.05", "--init", "zeros",
                 "--set", "distill.eval_episodes=4", "--no-progress"]) == 0
    recorded = config_lib.load(artifacts.config_file(first))
    assert recorded.distill == DistillConfig(teacher=teacher, init="zeros", rounds=2, episodes=4, updates=3, batch=4,
                                             learning_rate=0.05, eval_episodes=4)
    assert main(["--config", str(artifacts.config_file(first)), "--out", str(again), "--no-progress"]) == 0
    assert config_lib.load(artifacts.config_file(again)) == recorded
    for name in ("student.npz", "rounds/000.npz", "rounds/001.npz"):
        a, b = np.load(first / name)["params"], np.load(again / name)["params"]
        assert a.tobytes() == b.tobytes(), name
    start = np.zeros(6, np.float32)  # the student did learn: the comparison is not of two untouched starts
    assert not np.array_equal(np.load(first / "rounds/000.npz")["params"], start)
    assert not np.array_equal(np.load(first / "student.npz")["params"], np.load(first / "rounds/000.npz")["params"])


DISTILL_CONFIGS = ["cartpole_pi_bc", "cartpole_pi_catch", "cartpole_pi_catch_large", "pendulum_pi_bc"]
COUNTS = ("--rounds", "--episodes", "--updates", "--batch")


def _documented_options(name: str) -> list[tuple[str, str]]:
    """The ``--option value`` pairs of the distill command line in a shipped config's comments."""
    comments = " ".join(line.lstrip("#") for line in (CONFIGS / f"{name}.yaml").read_text().splitlines()
                        if line.startswith("#"))
    words = shlex.split(comments.split("python -m pinn_jax distill", 1)[1].replace("\\", " "))
    pairs = []
    while len(words) >= 2 and words[0].startswith("--"):
        option, value = words[0], words[1].rstrip(").")
        pairs.append((option, value))
        if value != words[1]:  # the command's closing parenthesis or full stop
            break
        words = words[2:]
    return pairs


@pytest.mark.parametrize("name", DISTILL_CONFIGS)
def test_the_shipped_configs_distill_command_lines_still_set_what_they_say(name, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(distill_module, "distill", lambda cfg, out, log: seen.append(cfg))
    monkeypatch.chdir(CONFIGS.parent)
    pairs = _documented_options(name)
    options = dict(pairs)
    assert {"--teacher", "--student", "--out", "--rounds", "--lr"} <= set(options), pairs
    argv = [w for option, value in pairs for w in (option, str(tmp_path / "o") if option == "--out" else value)]
    assert main(argv) == 0
    (cfg,) = seen
    assert cfg.policy == config_lib.load(options["--student"]).policy
    for option, value in pairs:
        if option in OPTIONS:
            kind = float if option in ("--lr", "--lqr-above") else int if option in COUNTS else str
            assert getattr(cfg.distill, OPTIONS[option][0]) == kind(value), option


def test_the_distill_section_is_optional_and_round_trips():
    for name in DISTILL_CONFIGS + ["quick"]:  # no shipped config has one: they all load with the defaults
        assert config_lib.load(name).distill == DistillConfig()
    assert DistillConfig() == DistillConfig(teacher=None, lqr_above=None, init="random", rounds=8, episodes=64,
                                            updates=100, batch=32, learning_rate=3e-3, loss="mse", eval_episodes=128)
    cfg = config_lib.load("quick", ["distill.teacher=pretrained:cartpole_pi", "distill.lqr_above=0.8",
                                    "distill.rounds=40", "distill.learning_rate=1e-3", "distill.loss=bce"])
    assert cfg.to_dict()["distill"]["lqr_above"] == 0.8
    assert config_lib.from_dict(cfg.to_dict()) == cfg
    assert cfg.distill.learning_rate == 1e-3 and cfg.distill.teacher == "pretrained:cartpole_pi"
