"""Memory estimated before work (pinn_jax.training.memory): a run, an evaluation or a video too big for the memory
available is one line naming the key or option, before anything is built or compiled (issue 38)."""

from __future__ import annotations

import pytest

from pinn_jax import config as config_lib
from pinn_jax import configs, train
from pinn_jax.errors import ConfigError, EvaluationError
from pinn_jax.study import across_envs, evaluate
from pinn_jax.training import loop, memory

GiB = 2**30


def _not_reached(*args, **kwargs):
    raise AssertionError("the memory check should have refused before this")


@pytest.mark.parametrize("overrides, key", [
    (["strategy.population_size=1000000000"], "strategy.population_size' = 1000000000"),
    (["policy.hidden_dim=1000000"], "policy.hidden_dim' = 1000000"),
    (["train.eval_every=1", "train.eval_episodes=1000000000"], "train.eval_episodes' = 1000000000"),
    (["train.num_noise=100000000"], "train.num_noise' = 100000000"),
], ids=["population", "hidden_dim", "eval_episodes", "num_noise"])
def test_a_run_too_big_is_one_line_naming_its_key_before_anything_is_built(overrides, key, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setattr(loop, "make_trainer", _not_reached)  # nothing is initialised, traced for a run or compiled
    run_dir = tmp_path / "run"
    argv = ["--config", "quick", "--out", str(run_dir), "--no-progress"]
    assert train.main(argv + [a for o in overrides for a in ("--set", o)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: config key '{key}: the run (")
    assert "of memory available (" in err and not run_dir.exists()


def test_a_run_too_big_for_the_memory_available_names_the_estimate_and_the_memory(monkeypatch):
    cfg = config_lib.load("quick", ["strategy.population_size=4096"])
    need = sum(memory.training_bytes(cfg).values())
    monkeypatch.setattr(memory, "available", lambda: (need - 1, "test"))
    with pytest.raises(ConfigError, match=rf"^config key 'strategy.population_size' = 4096: the run \(episodes .*\) "
                                          rf"needs about {memory.size(need)}, more than the .* available \(test\)$"):
        memory.check_training(cfg)
    monkeypatch.setattr(memory, "available", lambda: (need, "test"))
    memory.check_training(cfg)  # just fits


def test_the_estimates_grow_as_the_arrays_they_count():
    base = config_lib.load("quick")
    parts = memory.training_bytes(base)
    pop, rollouts = base.strategy.population_size, base.train.rollouts
    twice = memory.training_bytes(config_lib.load("quick", [f"strategy.population_size={2 * pop}",
                                                            f"train.rollouts={2 * rollouts}"]))
    assert twice["population"] == 2 * parts["population"] and twice["episodes"] == 4 * parts["episodes"]
    assert twice["search state"] == parts["search state"]  # CMA-ES's state does not grow with the population
    params = 913  # quick's attention neuron
    assert parts["search state"] >= memory.STATE_COPIES * 2 * 4 * params**2  # covariance and eigenvectors
    diagonal = memory.training_bytes(config_lib.load("quick", ["strategy.name=Sep_CMA_ES"]))
    assert diagonal["search state"] < memory.STATE_COPIES * 16 * 4 * params
    assert parts["held-out episodes"] > 0 and memory.training_bytes(config_lib.load(
        "quick", ["train.eval_every=0"]))["held-out episodes"] == 0  # no held-out episodes are run
    noisy = memory.training_bytes(config_lib.load("quick", ["train.num_noise=995"]))  # 1000 features, not 5
    assert noisy["episodes"] > 100 * parts["episodes"]


@pytest.mark.slow
def test_the_shipped_configs_fit():
    for name in configs.available():
        cfg = config_lib.load(name)
        assert sum(memory.training_bytes(cfg).values()) < GiB, name
        memory.check_training(cfg)


def test_memory_available_is_read_and_compared(monkeypatch):
    free, source = memory.available()
    assert 0 < free < float("inf") and source == "MemAvailable in /proc/meminfo"  # the tests run on CPU
    monkeypatch.setattr(memory, "available", lambda: (2 * GiB, "test"))
    memory.require(2 * GiB, "fits")
    with pytest.raises(EvaluationError, match=r"^--x 9 needs about 2.0 GiB, more than the 2.0 GiB of memory "
                                              r"available \(test\)$"):
        memory.require(2 * GiB + 1, "--x 9", EvaluationError)


@pytest.mark.parametrize("argv, says", [
    (["--episodes", "1000000000"], "--episodes 1000000000 of pretrained:cartpole_pi in noise_30 ("),
    (["--noise", "1000000000"], "--episodes 200 of pretrained:cartpole_pi in noise_1000000000 ("),
    (["--video", "v.gif", "--video-size", "1000000x1000000"], "--video-size 1000000x1000000 (a video of "),
    (["--attention", "a.png", "--max-steps", "1000000000"], "--attention (an episode of 1000000000 steps recorded)"),
], ids=["episodes", "noise", "video_size", "attention"])
def test_an_evaluation_too_big_is_one_line_before_it_runs(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate, "evaluate", _not_reached)
    assert evaluate.main(["pretrained:cartpole_pi", "pretrained:cartpole_mlp", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {says}") and "of memory available (" in err, err


def test_a_study_too_big_is_one_line_before_it_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(across_envs, "evaluate", _not_reached)
    argv = ["pretrained:cartpole_v1_mlp", "pretrained:pendulum_pi", "--episodes", "1000000000",
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert across_envs.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --episodes 1000000000 of pretrained:pendulum_pi in "
                                                         "noise_5 ("), err
