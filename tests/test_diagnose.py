"""Behaviour diagnostics (python -m pinn_jax diagnose): turn counting, survivor statistics on synthetic
trajectories, agreement with the evaluation study on real episodes, and CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pinn_jax.config import EnvConfig
from pinn_jax.errors import EvaluationError
from pinn_jax.models import load_model
from pinn_jax.study import diagnose as dg
from pinn_jax.study import evaluate as ev
from pinn_jax.study.conditions import parse_condition

T = 100


def test_turns_counts_full_rotations_in_either_direction_and_nothing_else():
    t = np.linspace(0, 1, 200)
    assert dg.turns(0.1 * np.sin(20 * t)) == 0  # wobbling at the top
    assert dg.turns(np.pi + 0.5 * np.sin(20 * t)) == 0  # swinging at the bottom without turning over
    assert dg.turns(4 * np.pi * t) == 2  # two turns forwards
    assert dg.turns(-6 * np.pi * t + 0.2) == 3  # three turns backwards
    assert dg.turns(2.5 * np.sin(np.pi * t)) == 0  # swings up past horizontal and falls back the same side
    assert dg.turns(np.stack([4 * np.pi * t, 0 * t])).tolist() == [2, 0]  # per row


def test_behaviour_stats_separate_balancing_spinning_and_lost_episodes():
    theta = np.zeros((4, T))
    theta[1] = np.linspace(0, 4 * np.pi, T)  # spins twice over the episode, once in its second half
    theta[2, T // 2:] = 0.5  # leans (cos 0.5 < 0.95) all through the second half
    reward = (np.cos(theta) + 1) / 2
    length = np.array([T, T, T, 7])  # the last episode is lost after 7 steps, its pole upright throughout
    reward[3, 7:] = 0.0
    st = dg.behaviour_stats(theta, reward, length, T)
    assert st["lost_step"] == 7 and st["lost_upright"] == 1.0
    down = theta.copy()
    down[3, 3:7] = np.pi  # the same episode lost with the pole hanging in 4 of its 7 steps
    assert dg.behaviour_stats(down, reward, length, T)["lost_upright"] == 0.0
    down[3, 4] = 0.0  # 4 of 7 steps upright: held when it was lost
    assert dg.behaviour_stats(down, reward, length, T)["lost_upright"] == 1.0
    assert np.isnan(dg.behaviour_stats(theta[:3], reward[:3], length[:3], T)["lost_step"])  # nothing lost
    assert st["episodes"] == 4 and st["survival"] == 0.75
    assert st["mean_return"] == pytest.approx(reward.sum(1).mean())
    assert st["survivor_return"] == pytest.approx(reward[:3].sum(1).mean())
    assert st["late_reward"] == pytest.approx(reward[:3, T // 2:].mean())
    assert st["balanced"] == pytest.approx(1 / 3)
    assert st["spinning"] == pytest.approx(1 / 3)
    assert st["turns"] == pytest.approx(1 / 3)
    assert set(st) == set(dg.POLE_KEYS) == set(dg.STAT_KEYS) - {"separation"}


def test_behaviour_stats_without_survivors_and_bad_shapes():
    st = dg.behaviour_stats(np.zeros((2, T)), np.zeros((2, T)), np.array([3, 4]), T)
    assert st["survival"] == 0.0 and np.isnan(st["balanced"]) and np.isnan(st["survivor_return"])
    assert st["lost_step"] == 3.5 and st["lost_upright"] == 1.0  # theta 0: upright when lost
    with pytest.raises(EvaluationError, match=r"must both be \(episodes, 100\)"):
        dg.behaviour_stats(np.zeros((2, T)), np.zeros((2, T - 1)), np.array([T, T]), T)


@pytest.fixture(scope="module")
def report():
    models = [load_model("pretrained:cartpole_mlp"), load_model("pretrained:cartpole_pi")]
    return models, dg.diagnose(models, episodes=24, env_cfg=EnvConfig(max_steps=400))


def test_real_episodes_agree_with_the_evaluation_study(report):
    models, rep = report
    study = ev.evaluate(models, [parse_condition("no_shuffle")], episodes=24, env_cfg=EnvConfig(max_steps=400))
    for m in models:
        cell = study["results"][m.name]["no_shuffle"]
        assert rep[m.name]["mean_return"] == pytest.approx(cell["mean"], rel=1e-5)


def test_the_shipped_mlp_balances_its_survivors(report):
    _, rep = report
    mlp = rep["pretrained:cartpole_mlp"]
    assert mlp["survival"] > 0.4
    assert mlp["balanced"] >= 0.9 and mlp["turns"] == 0.0 and mlp["late_reward"] > 0.95


def test_cli_prints_a_table_writes_json_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "d"
    assert dg.main(["pretrained:cartpole_linear", "--episodes", "4", "--max-steps", "50", "--out", str(out)]) == 0
    assert "pretrained:cartpole_linear" in capsys.readouterr().out
    assert json.loads((out / "diagnose.json").read_text())["pretrained:cartpole_linear"]["episodes"] == 4
    (tmp_path / "file").write_text("keep")
    assert dg.main(["pretrained:cartpole_linear", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "keep"
    assert dg.main(["pretrained:no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        dg.main(["pretrained:cartpole_linear", "--episodes", "0"])
    assert e.value.code == 2 and "argument --episodes: must be an integer from 1" in capsys.readouterr().err


def test_the_same_model_twice_gets_two_rows():
    m = load_model("pretrained:cartpole_linear")
    rep = dg.diagnose([m, m], episodes=3, env_cfg=EnvConfig(max_steps=20))
    assert list(rep) == ["pretrained:cartpole_linear", "pretrained:cartpole_linear#2"]
    assert rep["pretrained:cartpole_linear"] == rep["pretrained:cartpole_linear#2"]


def test_attention_separation_measures_how_differently_the_features_are_weighed():
    same = np.tile(np.array([[0.3], [-0.9]]), (1, 5))  # 2 queries, 5 features, identical columns
    assert float(dg.attention_separation(same)) == 0.0
    opposite = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert float(dg.attention_separation(opposite)) == pytest.approx(2.0)
    a = np.array([[0.0, 0.5, 1.0]])  # pairs: 0.5, 1.0, 0.5
    assert float(dg.attention_separation(a)) == pytest.approx(2.0 / 3.0)
    assert dg.attention_separation(np.stack([same, same])).shape == (2,)  # leading axes are kept
    assert np.isnan(float(dg.attention_separation(np.ones((4, 1)))))


def test_separation_tells_the_agents_that_balance_from_the_es_agent_that_sees_a_sum():
    """The ES-only agent's attention hardly depends on which feature it reads (its policy is close to a
    function of the sum of the inputs); the agents that balance weigh their features apart."""
    names = ["pretrained:cartpole_pi_catch", "pretrained:cartpole_pi_es_paper", "pretrained:cartpole_linear"]
    rep = dg.diagnose([load_model(n) for n in names], episodes=24, env_cfg=EnvConfig(max_steps=400))
    assert rep[names[0]]["separation"] > 0.45
    assert rep[names[1]]["separation"] < 0.3
    assert rep[names[2]]["separation"] == "n/a"


def test_overrides_keep_each_models_own_env(capsys, tmp_path):
    out = tmp_path / "d"
    assert dg.main(["pretrained:cartpole_linear", "pretrained:pendulum_pi", "--episodes", "3", "--max-steps", "30",
                    "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "diagnose.json").read_text())
    pend = load_model("pretrained:pendulum_pi")
    alone = dg.diagnose([pend], episodes=3, env_cfg=EnvConfig(name="Pendulum-v1", max_steps=30))
    assert rep["pretrained:pendulum_pi"]["mean_return"] == pytest.approx(alone["pretrained:pendulum_pi"]["mean_return"])
    assert rep["pretrained:pendulum_pi"]["mean_return"] < 0  # a Pendulum return, not a swing-up one
    assert isinstance(rep["pretrained:pendulum_pi"]["separation"], float)
    assert rep["pretrained:pendulum_pi"]["balanced"] == "n/a"
