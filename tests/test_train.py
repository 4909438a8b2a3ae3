"""Training: determinism, exact resume, learning progress, compilation, configs and errors."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import counting_traces, tiny_dict

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import ConfigError
from pinn_jax.envs.fitness import Fitness
from pinn_jax.experiment import build_env, build_policy
from pinn_jax.rollout import evaluate_population
from pinn_jax.train import TrainingError, main, train
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training import es
from pinn_jax.training.metrics import read_csv
from pinn_jax.training.runs import resolve_start, run_params
from pinn_jax.training.trainer import make_evaluator, make_trainer

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def tiny(run_dir, **sections) -> config_lib.Config:
    """A seconds-sized config: the distributed tests' tiny config with 60-step episodes, 4 generations."""
    data = {"env": {"max_steps": 60}, "train": {"generations": 4, "log_every": 2}}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return config_lib.from_dict(tiny_dict(run_dir, **data))


def fitness_of(tr) -> Fitness:
    """The fitness a trainer's training env is shaped by (the wrapper under the action and observation ones)."""
    return tr.exp.fitness_env.env.env.fitness


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_same_seed_same_history_and_different_seed_differs(tmp_path):
    cfg = tiny(tmp_path / "a")
    _, s1, rows1 = train(cfg, progress=False)
    _, s2, rows2 = train(dataclasses.replace(cfg, run_dir=str(tmp_path / "b")), progress=False)
    _, _, rows3 = train(dataclasses.replace(cfg, seed=4, run_dir=str(tmp_path / "c")), progress=False)
    assert [r["fitness_mean"] for r in rows1] == [r["fitness_mean"] for r in rows2]
    assert leaves_equal(s1.es_state, s2.es_state)
    assert [r["fitness_mean"] for r in rows1] != [r["fitness_mean"] for r in rows3]
    assert len(rows1) == 4 and [r["generation"] for r in rows1] == [1, 2, 3, 4]


def test_exact_resume_is_bit_identical(tmp_path):
    full = tiny(tmp_path / "full", train={"generations": 6})
    _, s_full, rows_full = train(full, progress=False)
    half = tiny(tmp_path / "half", train={"generations": 2})
    train(half, progress=False)
    cont = dataclasses.replace(half, train=dataclasses.replace(half.train, generations=6))
    _, s_res, rows_res = train(cont, resume=True, progress=False)
    assert int(s_res.generation) == 6
    assert leaves_equal(s_full, s_res)
    assert [r["fitness_max"] for r in rows_full[2:]] == [r["fitness_max"] for r in rows_res]
    # the CSV holds the whole history once
    assert [r["generation"] for r in read_csv(tmp_path / "half")] == [1, 2, 3, 4, 5, 6]


def test_resume_after_logging_past_the_checkpoint_keeps_each_generation_once(tmp_path):
    full = tiny(tmp_path / "full", train={"generations": 6})
    _, _, rows_full = train(full, progress=False)
    cfg = tiny(tmp_path / "run", train={"generations": 4})  # checkpoints at 2 and 4, rows 1..4
    train(cfg, progress=False)
    import shutil
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "4")  # as if killed after logging 3, 4 but before saving 4
    cont = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, generations=6))
    train(cont, resume=True, progress=False)
    rows = read_csv(tmp_path / "run")
    assert [r["generation"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["fitness_max"] for r in rows] == pytest.approx([r["fitness_max"] for r in rows_full], abs=1e-4)
    wall = [r["wall_time"] for r in rows]
    assert wall == sorted(wall)  # the run's total time keeps counting on after a resume


def test_held_out_evaluation_of_the_mean(tmp_path):
    from pinn_jax.training.trainer import held_out_keys, make_evaluator

    cfg = tiny(tmp_path / "run", train={"generations": 6, "eval_every": 2, "eval_episodes": 5})
    tr, state, _ = train(cfg, progress=False)
    rows = read_csv(tmp_path / "run", "eval.csv")
    assert [r["generation"] for r in rows] == [2, 4, 6]
    # the logged score is the final mean's return on the fixed held-out episodes, recomputable
    final = np.load(tmp_path / "run" / "params.npz")["mean"]
    returns = np.asarray(make_evaluator(tr, 5)(final))
    assert rows[-1]["return_mean"] == pytest.approx(returns.mean(), abs=1e-3)
    assert rows[-1]["return_min"] == pytest.approx(returns.min(), abs=1e-3)
    # eval_best.npz keeps the best-scoring mean and says when it was seen
    kept = np.load(tmp_path / "run" / "eval_best.npz")
    best = max(rows, key=lambda r: r["return_mean"])
    assert int(kept["generation"]) == best["generation"]
    assert float(kept["return_mean"]) == pytest.approx(best["return_mean"], abs=1e-3)
    assert float(np.asarray(make_evaluator(tr, 5)(kept["params"])).mean()) == pytest.approx(best["return_mean"],
                                                                                              abs=1e-3)
    # held-out episodes are not the training episodes of any generation
    train_keys = {tuple(np.asarray(k)) for k in jax.random.split(jax.random.PRNGKey(cfg.seed), 4)}
    assert not train_keys & {tuple(np.asarray(k)) for k in held_out_keys(cfg.seed, 5)}


def tb_events(directory: pathlib.Path) -> list:
    """The events of the TensorBoard event files in ``directory`` (TFRecords: length, its CRC, data, its CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at:at + 8])
            events.append(Event.FromString(data[at + 12:at + 12 + n]))
            at += 12 + n + 4
    return events


def test_tensorboard_hparams_hold_the_config_and_final_scores(tmp_path):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    cfg = tiny(tmp_path / "run", train={"generations": 4, "eval_every": 2, "eval_episodes": 3})
    _, _, rows = train(cfg, progress=False)
    values = [v for e in tb_events(tmp_path / "run" / artifacts.TB_DIR / "hparams") for v in e.summary.value]
    start = [HParamsPluginData.FromString(v.metadata.plugin_data.content).session_start_info
             for v in values if v.tag == "_hparams_/session_start_info"]
    assert len(start) == 1
    hp = start[0].hparams
    assert hp["strategy.name"].string_value == "CMA_ES" and hp["env.start"].string_value == "easy"
    assert hp["strategy.population_size"].number_value == 8 and hp["train.eval_every"].number_value == 2
    assert hp["train.common_random_numbers"].bool_value is True
    scores = {v.tag: v.simple_value for v in values if v.tag.startswith("hparam/")}
    held_out = read_csv(tmp_path / "run", "eval.csv")
    assert scores["hparam/held_out_return"] == pytest.approx(held_out[-1]["return_mean"], rel=1e-6)
    assert scores["hparam/best_held_out_return"] == pytest.approx(max(r["return_mean"] for r in held_out), rel=1e-6)
    assert scores["hparam/best_fitness"] == pytest.approx(rows[-1]["best_so_far"], rel=1e-6)


def test_tensorboard_leaves_out_the_step_size_of_a_strategy_without_one(tmp_path):
    train(tiny(tmp_path / "run", strategy={"name": "PSO"}), progress=False)
    values = [v for e in tb_events(tmp_path / "run" / artifacts.TB_DIR) for v in e.summary.value]
    assert {"train/fitness_mean", "train/center_norm"} <= {v.tag for v in values}
    assert "train/step_size" not in {v.tag for v in values}
    assert all(np.isfinite(v.simple_value) for v in values if v.tag.startswith("train/"))


def test_episode_steps_cut_training_episodes_but_not_held_out_ones(tmp_path):
    cfg = tiny(tmp_path / "run", env={"max_steps": 60},
               train={"generations": 2, "episode_steps": 5, "eval_every": 2, "eval_episodes": 4})
    assert cfg.train_steps == 5
    _, _, rows = train(cfg, progress=False)
    assert max(r["fitness_max"] for r in rows) <= 5.0  # reward <= 1 per step, 5 steps
    held_out = read_csv(tmp_path / "run", "eval.csv")
    assert held_out[-1]["return_max"] > 5.0  # whole 60-step episodes
    with pytest.raises(ConfigError, match=r"'train.episode_steps' must be <= env.max_steps \(60\), got 61"):
        tiny(tmp_path, env={"max_steps": 60}, train={"episode_steps": 61})


def test_eval_settings_can_change_on_resume(tmp_path):
    cfg = tiny(tmp_path / "run", train={"generations": 2})
    train(cfg, progress=False)
    assert not (tmp_path / "run" / "eval.csv").exists()
    assert main(["--resume", str(tmp_path / "run"), "--no-progress", "--set", "train.generations=4",
                 "--set", "train.eval_every=2", "--set", "train.eval_episodes=3"]) == 0
    assert [r["generation"] for r in read_csv(tmp_path / "run", "eval.csv")] == [4]


def started(tr):
    """The trainer's state at the start its config's strategy.init_mean names (as train() resolves it)."""
    return tr.init(resolve_start(tr.cfg.strategy.init_mean, tr.exp, jax.random.PRNGKey(0)).mean)


def test_warm_start_from_saved_parameters(tmp_path, capsys):
    first = tiny(tmp_path / "first", train={"generations": 2})
    train(first, progress=False)
    saved = np.load(tmp_path / "first" / "params.npz")["mean"]
    warm = tiny(tmp_path / "warm", strategy={"init_mean": str(tmp_path / "first" / "params.npz")})
    tr = make_trainer(warm)
    np.testing.assert_array_equal(np.asarray(tr.mean_flat(started(tr))), saved)
    shipped = tiny(tmp_path / "shipped", strategy={"init_mean": "pretrained:cartpole_linear"})
    tr = make_trainer(shipped)
    np.testing.assert_array_equal(np.asarray(tr.mean_flat(started(tr))),
                                  np.load(artifacts.shipped_file("cartpole_linear"))["params"])
    np.savez(tmp_path / "short.npz", params=saved[:-1])
    for init, message in [(tmp_path / "none.npz", "parameter file not found"),
                          (tmp_path / "nowhere", "not found: "),
                          ("pretrained:nope", "no pretrained model 'nope' (available: acrobot_mlp, "),
                          (tmp_path / "short.npz", "holds 5 parameters, this policy has 6")]:
        assert main(["--config", str(CONFIGS / "quick.yaml"), "--run-dir", str(tmp_path / "bad"),
                     "--set", "policy.name=linear", "--set", f"strategy.init_mean={init}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: config key 'strategy.init_mean'") and message in err and "\n" not in err
        assert not (tmp_path / "bad").exists()  # nothing written for a run that cannot start


def test_a_stage_starts_from_a_run_directory_or_one_of_its_checkpoints(tmp_path):
    """Staged ES in one command: strategy.init_mean names the previous stage's run directory (its newest
    checkpoint's mean, also when it was interrupted) or RUN_DIR/checkpoints/N, that generation's mean."""
    first = tiny(tmp_path / "first", train={"generations": 4, "checkpoint_every": 2})
    train(first, progress=False)
    tr = make_trainer(first)
    at2 = np.asarray(tr.mean_flat(tr.run(tr.init(), 2)[0]))  # the same run's mean at generation 2, recomputed
    final = np.load(tmp_path / "first" / "params.npz")["mean"]
    assert not np.array_equal(at2, final)
    for init, expected in [(tmp_path / "first", final), (tmp_path / "first" / "checkpoints" / "2", at2)]:
        stage = make_trainer(tiny(tmp_path / "stage", strategy={"init_mean": str(init)}, env={"start": "easy"}))
        np.testing.assert_array_equal(np.asarray(stage.mean_flat(started(stage))), expected)
    with pytest.raises(ConfigError, match=r"^config key 'strategy.init_mean': .*first \(generation 4, mean\) holds 6 "
                                          r"parameters \(linear\), this policy has \d+$"):
        mlp = tiny(tmp_path / "mlp", strategy={"init_mean": str(tmp_path / "first")}, policy={"name": "mlp"})
        started(make_trainer(mlp))


def test_keep_every_keeps_those_checkpoints_for_good_beside_the_newest_three(tmp_path, capsys):
    """train.keep_every k keeps every checkpoint whose generation is a multiple of k as well as the newest three,
    so that a stage's means can be compared after it ends; a resume may not change it (it would delete kept ones)."""
    def steps(run: pathlib.Path) -> list[int]:
        return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())

    kept, plain = tmp_path / "kept", tmp_path / "plain"
    train(tiny(kept, train={"generations": 8, "log_every": 1, "checkpoint_every": 1, "keep_every": 3}), progress=False)
    train(tiny(plain, train={"generations": 8, "log_every": 1, "checkpoint_every": 1}), progress=False)
    assert steps(plain) == [6, 7, 8] and steps(kept) == [3, 6, 7, 8]
    assert run_params(kept / "checkpoints" / "3")[3] == 3  # a kept checkpoint is a model to evaluate or start from
    capsys.readouterr()
    assert main(["--resume", str(kept), "--set", "train.generations=9", "--set", "train.keep_every=4"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: cannot resume {kept}: overrides change train.keep_every; to go "
                                               f"on with new settings, start a new run from it: --config "
                                               f"{kept / 'config.yaml'} --set strategy.init_mean={kept} --out NEW")
    assert steps(kept) == [3, 6, 7, 8]
    with pytest.raises(ConfigError, match="'train.keep_every' must be >= 0, got -1"):
        tiny(tmp_path / "neg", train={"keep_every": -1})


def test_a_stage_records_the_checkpoint_it_started_from_and_resumes_without_its_source(tmp_path):
    """A run-directory init_mean is saved in the stage's config.yaml as the checkpoint it resolved to, and the
    mean itself as init_mean.npz; a resumed stage restores its own state and never rereads the source, which may
    be gone by then, and the stage reruns from its copy of the start bit for bit."""
    first = tiny(tmp_path / "first", train={"generations": 4, "checkpoint_every": 2})
    train(first, progress=False)
    stage = tiny(tmp_path / "stage", strategy={"init_mean": str(tmp_path / "first")},
                 train={"generations": 2, "checkpoint_every": 2})
    train(stage, progress=False)
    saved = ckpt.load_config(tmp_path / "stage")
    assert saved.strategy.init_mean == str(tmp_path / "first" / "checkpoints" / "4")
    assert not (tmp_path / "first" / artifacts.INIT_MEAN_FILE).exists()  # a search from zeros keeps none
    start = tmp_path / "stage" / artifacts.INIT_MEAN_FILE  # the start itself, kept with the stage
    with np.load(start) as f:
        assert str(f["source"]) == saved.strategy.init_mean
    np.testing.assert_array_equal(artifacts.load_flat(start), run_params(tmp_path / "first")[0])
    whole_tr, whole, _ = train(dataclasses.replace(stage, run_dir=str(tmp_path / "whole"),
                                                   train=dataclasses.replace(stage.train, generations=4)),
                               progress=False)
    shutil.rmtree(tmp_path / "first")
    cfg = dataclasses.replace(saved, train=dataclasses.replace(saved.train, generations=4))
    tr, resumed, _ = train(cfg, resume=True, progress=False)
    assert int(resumed.generation) == 4
    np.testing.assert_array_equal(np.asarray(tr.mean_flat(resumed)), np.asarray(whole_tr.mean_flat(whole)))
    # the source is gone, and the stage reruns from its own copy of the start, bit for bit
    rerun = dataclasses.replace(cfg, run_dir=str(tmp_path / "rerun"),
                                strategy=dataclasses.replace(cfg.strategy, init_mean=str(start)))
    rerun_tr, again, _ = train(rerun, progress=False)
    np.testing.assert_array_equal(np.asarray(rerun_tr.mean_flat(again)), np.asarray(whole_tr.mean_flat(whole)))


def test_generation_is_compiled_once(tmp_path):
    with counting_traces() as traces:
        tr = make_trainer(tiny(tmp_path))
    state = tr.init()
    for _ in range(3):
        state, m = tr.run(state, 2)
    assert len(traces) == 1
    assert int(state.generation) == 6
    assert m["fitness_mean"].shape == (2,)


def test_linear_policy_improves_on_easy_env(tmp_path):
    cfg = tiny(tmp_path, env={"max_steps": 200},
               strategy={"population_size": 16, "sigma_init": 0.5},
               train={"generations": 20, "rollouts": 4, "log_every": 10})
    _, _, rows = train(cfg, progress=False)
    first = np.mean([r["fitness_mean"] for r in rows[:3]])
    last = np.mean([r["fitness_mean"] for r in rows[-3:]])
    assert last > first + 5.0, (first, last)
    assert rows[-1]["best_so_far"] >= max(r["fitness_max"] for r in rows) - 1e-4


def test_common_random_numbers_switch():
    cfg = tiny("unused", env={"start": "hard"})
    policy = build_policy(cfg.policy)
    env, params = build_env(cfg.env)
    p = policy.init(jax.random.PRNGKey(0), 5)
    pop = jax.tree.map(lambda x: jnp.stack([x, x, x]), p)  # three identical members
    crn = evaluate_population(policy, env, params, pop, jax.random.PRNGKey(1), 3, 60, common=True)
    ind = evaluate_population(policy, env, params, pop, jax.random.PRNGKey(1), 3, 60, common=False)
    assert crn.shape == ind.shape == (3, 3)
    np.testing.assert_array_equal(crn[0], crn[1])
    np.testing.assert_array_equal(crn[0], crn[2])
    assert not np.array_equal(ind[0], ind[1])


@pytest.mark.parametrize("name", ["Sep_CMA_ES", "PGPE", "Open_ES", "SNES", "sep-cma-es", "SimpleGA", "PSO",
                                  "DiffusionEvolution"])
def test_other_strategies_by_name(tmp_path, name):
    tr = make_trainer(tiny(tmp_path, strategy={"name": name}))
    state, m = tr.run(tr.init(), 2)
    assert np.all(np.isfinite(m["fitness_mean"]))
    assert int(state.generation) == 2
    assert np.isfinite(float(tr.strategy.best(state.es_state)[1]))


def quadratic(population, key) -> jax.Array:
    """Fitness to maximise, best at every parameter 1."""
    return -sum(jnp.sum((leaf - 1.0) ** 2, axis=tuple(range(1, leaf.ndim))) for leaf in jax.tree.leaves(population))


@pytest.mark.parametrize("name", es.available())
def test_every_supported_strategy_runs(name):
    """Every evosax algorithm pinn_jax offers runs two generations of ask, evaluate, tell on a 10-parameter
    pytree: the fitness stays finite, the best is an evaluated member, and the search moves."""
    template = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}
    strategy = es.make_strategy(config_lib.StrategyConfig(name=name, population_size=8, sigma_init=0.5), template)
    key = jax.random.PRNGKey(0)
    state = s0 = strategy.init(key, template, quadratic)
    seen = []
    for k in jax.random.split(key, 2):
        k_ask, k_eval, k_tell = jax.random.split(k, 3)
        population, state = strategy.ask(k_ask, state)
        fitness = quadratic(population, k_eval)
        seen.append(np.asarray(fitness))
        state = strategy.tell(k_tell, population, fitness, state)
    assert int(state.generation_counter) == 2 and np.isfinite(seen).all()
    best, best_fitness = strategy.best(state)
    unravel = jax.flatten_util.ravel_pytree(template)[1]
    recomputed = quadratic(jax.tree.map(lambda x: x[None], unravel(best)), None)[0]
    assert float(best_fitness) == pytest.approx(float(recomputed), rel=1e-5)
    assert float(best_fitness) >= max(f.max() for f in seen) - 1e-5
    searched = "population" if strategy.mean(state) is None else "mean"  # population-based: no mean
    assert not np.array_equal(getattr(s0, searched), getattr(state, searched)), f"the {searched} did not move"


@pytest.mark.parametrize("name", ["Open_ES", "PGPE"])
def test_small_step_strategies_default_to_adam_steps_of_a_fifth_of_sigma(name):
    """Without strategy.optimizer, the gradient ES whose evosax optimizer steps 1e-3 to 1e-2 whatever sigma
    (from zeros they learn nothing in 30 generations of configs/quick.yaml) move each coordinate by
    ADAM_STEP_PER_SIGMA * sigma_init in the first generation (Adam's first step: lr * sign(gradient))."""
    assert name in es.SMALL_STEP_DEFAULTS
    template = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}
    strategy = es.make_strategy(config_lib.StrategyConfig(name=name, population_size=16, sigma_init=0.5), template)
    key = jax.random.PRNGKey(1)
    state = s0 = strategy.init(key, template, quadratic)
    population, state = strategy.ask(key, state)
    state = strategy.tell(key, population, quadratic(population, key), state)
    step = np.abs(np.asarray(strategy.mean(state) - strategy.mean(s0)))
    np.testing.assert_allclose(step, es.ADAM_STEP_PER_SIGMA * 0.5, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(es.UNSUPPORTED))
def test_unsupported_strategies_are_refused_in_one_line(name):
    with pytest.raises(ConfigError) as e:
        es.make_strategy(config_lib.StrategyConfig(name=name), {"w": jnp.zeros(3)})
    message = str(e.value)
    assert "\n" not in message and es.UNSUPPORTED[name] in message
    assert name not in message.split("all supported: ")[1].split(", ")


def test_gradient_optimizer_is_configurable(tmp_path):
    cfg = tiny(tmp_path, strategy={"name": "Open_ES", "optimizer": "adam", "learning_rate": 0.05})
    tr = make_trainer(cfg)
    s0 = tr.init()
    s1, _ = tr.run(s0, 1)
    step = np.abs(np.asarray(tr.mean_flat(s1) - tr.mean_flat(s0)))
    np.testing.assert_allclose(step, 0.05, rtol=1e-3)  # Adam's first step: lr * sign(gradient) per coordinate
    sgd = make_trainer(tiny(tmp_path, strategy={"name": "Open_ES", "optimizer": "sgd", "learning_rate": 0.05}))
    t0 = sgd.init()
    t1, _ = sgd.run(t0, 1)
    assert np.std(np.abs(np.asarray(sgd.mean_flat(t1) - sgd.mean_flat(t0)))) > 1e-4  # plain SGD: not sign-like


@pytest.mark.parametrize("strategy,message", [
    ({"name": "CMA_ES", "optimizer": "adam"}, "'strategy.optimizer' does not apply to CMA_ES"),
    ({"name": "Open_ES", "optimizer": "nope"}, "'strategy.optimizer' 'nope' is not an optax optimizer"),
])
def test_bad_optimizer_is_a_config_error(tmp_path, strategy, message):
    with pytest.raises(ConfigError, match=message):
        make_trainer(tiny(tmp_path, strategy=strategy))


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="strategy.name.*not an evosax algorithm") as e:
        es.make_strategy(config_lib.StrategyConfig(name="NoSuchES"), {"w": jnp.zeros(3)})
    offered = str(e.value).split("all supported: ")[1].rstrip(")").split(", ")
    assert offered == es.available() and not set(offered) & set(es.UNSUPPORTED)


def test_nan_fitness_stops_without_touching_checkpoints(tmp_path):
    cfg = tiny(tmp_path / "run")
    tr, state, _ = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, generations=2)),
                         progress=False)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())

    def nan_run(s, n):
        s, m = tr.run(s, n)
        return s, {**m, "nan_count": m["nan_count"] + 1, "fitness_mean": m["fitness_mean"] * jnp.nan}

    bad = dataclasses.replace(tr, run=nan_run)
    with pytest.raises(TrainingError, match="NaN fitness .* generation 3"):
        train(cfg, resume=True, progress=False, trainer=bad)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    """Python callers are told the Python argument (resume=True), the command line its flags."""
    cfg = tiny(tmp_path / "run", train={"generations": 2})
    train(cfg, progress=False)
    mtime = (tmp_path / "run" / "metrics.csv").stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"already exists and is not empty; continue it \(resume=True\) or choose "
                                          r"another run_dir$"):
        train(cfg, progress=False)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["--config", str(config_file), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: run directory {tmp_path / 'run'} already exists and is not "
                                               f"empty; continue it (--resume RUN_DIR) or choose another --out")
    assert (tmp_path / "run" / "metrics.csv").stat().st_mtime_ns == mtime


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"rollout": 3}}))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: unknown config key 'train.rollout' (valid keys here: alive_bonus, cart_only_steps, "
                   "checkpoint_every, common_random_numbers, episode_steps, eval_episodes, eval_every, fall_after, "
                   "fall_credit, generations, keep_every, log_every, num_noise, reward_power, rollouts, shuffle, "
                   "shuffle_every, start_scale)")
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a pinn_jax run directory" in capsys.readouterr().err


def test_resume_with_incompatible_config_is_refused(tmp_path, capsys):
    cfg = tiny(tmp_path / "run", train={"generations": 2})
    train(cfg, progress=False)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**cfg.to_dict(), "policy": {"name": "mlp", "hidden": [4]}}))
    assert main(["--resume", str(tmp_path / "run"), "--config", str(other)]) == 2
    assert "incompatible config keys policy.hidden, policy.name" in capsys.readouterr().err
    # a checkpoint whose shapes do not match the trainer is reported, not crashed on
    tr = make_trainer(dataclasses.replace(cfg, policy=config_lib.PolicyConfig(name="mlp", hidden=(4,))))
    with pytest.raises(ckpt.CheckpointError, match="does not match this config"):
        ckpt.restore(tmp_path / "run", tr.init())


@pytest.mark.parametrize("override,message", [
    ("train.rollouts=abc", "config key 'train.rollouts' has the wrong type: expected int"),
    ("train.rollouts=0", "config key 'train.rollouts' must be >= 1"),
    ("env.start=medium", "config key 'env.start' must be 'hard', 'easy' or 'upright'"),
    ("policy.name=cnn", "config key 'policy.name' must be one of"),
    ("nokey", "must look like key=value"),
    ("strategy.sigma=1", "unknown config key 'strategy.sigma'"),
])
def test_config_validation_messages(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_lib.load(CONFIGS / "quick.yaml", [override])


def test_shipped_configs_are_valid():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {"cartpole_pi", "cartpole_mlp", "cartpole_linear", "cartpole_mlp_shuffle", "cartpole_linear_shuffle",
            "quick"} <= names
    for p in CONFIGS.glob("*.yaml"):
        cfg = config_lib.load(p)
        assert cfg.run_dir.startswith("runs/")
    pi = config_lib.load(CONFIGS / "cartpole_pi.yaml")
    assert (pi.strategy.population_size, pi.train.rollouts, pi.env.max_steps, pi.strategy.sigma_init,
            pi.env.start, pi.train.shuffle) == (256, 16, 1000, 0.1, "hard", False)
    assert config_lib.load(CONFIGS / "cartpole_mlp_shuffle.yaml").train.shuffle is True


def test_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "pinn_jax.train", "--config", str(CONFIGS / "quick.yaml"), "--run-dir", str(run),
           "--no-progress", "--set", "train.generations=100000", "--set", "train.log_every=1",
           "--set", "train.checkpoint_every=1000", "--set", "env.max_steps=50", "--set", "env.start=hard",
           "--set", "policy.name=linear"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len((run / "metrics.csv").read_text().splitlines()
                                             if (run / "metrics.csv").exists() else []) < 4:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: saved generation" in err
    saved = [int(p.name) for p in (run / "checkpoints").iterdir()]
    assert len(saved) == 1 and saved[0] >= 3 and saved[0] % 1000 != 0
    assert main(["--resume", str(run), "--set", f"train.generations={saved[0] + 2}", "--no-progress"]) == 0
    assert [int(r["generation"]) for r in read_csv(run)][-1] == saved[0] + 2
    assert os.path.exists(run / "params.npz")


def test_zeros_start_takes_the_policys_forget_bias(tmp_path):
    cfg = tiny(tmp_path / "run", policy={"name": "attention_neuron", "init_forget_bias": 5.0})
    tr = make_trainer(cfg)
    mean = tr.unravel(tr.mean_flat(tr.init()))
    h = tr.policy.pos_em_dim
    np.testing.assert_array_equal(mean["lstm"]["bias_ih"], np.r_[np.zeros(h), np.full(h, 2.5), np.zeros(2 * h)])
    assert float(np.abs(np.asarray(tr.mean_flat(tr.init()))).sum()) == 2 * h * 2.5  # nothing else


def test_reward_power_shapes_the_fitness_and_never_the_held_out_score(tmp_path):
    cfg = tiny(tmp_path / "run", env={"start": "hard"}, train={"reward_power": 4.0})
    plain = make_trainer(tiny(tmp_path / "plain", env={"start": "hard"}))
    shaped = make_trainer(cfg)
    assert fitness_of(shaped).reward_power == 4.0 and shaped.env == plain.env  # held-out: the bare env
    flat = shaped.mean_flat(shaped.init()) + 0.3
    assert np.array_equal(make_evaluator(shaped, 8)(flat), make_evaluator(plain, 8)(flat))  # held-out: true reward
    (_, m_shaped), (_, m_plain) = shaped.run(shaped.init(), 1), plain.run(plain.init(), 1)
    assert float(m_shaped["fitness_mean"][0]) < float(m_plain["fitness_mean"][0])  # same members, same episodes
    with pytest.raises(ConfigError, match="'train.reward_power' shapes the swing-up's fitness only"):
        make_trainer(tiny(tmp_path / "v1", env={"name": "CartPole-v1", "start": "hard"}, train={"reward_power": 2.0}))


def test_fall_after_ends_training_episodes_only(tmp_path):
    cfg = tiny(tmp_path / "run", env={"start": "hard", "max_steps": 120}, train={"fall_after": 10})
    plain = make_trainer(tiny(tmp_path / "plain", env={"start": "hard", "max_steps": 120}))
    shaped = make_trainer(cfg)
    assert fitness_of(shaped).fall_after == 10 and shaped.env == plain.env
    flat = shaped.mean_flat(shaped.init())
    assert np.array_equal(make_evaluator(shaped, 8)(flat), make_evaluator(plain, 8)(flat))
    (_, m_shaped), (_, m_plain) = shaped.run(shaped.init(), 1), plain.run(plain.init(), 1)
    assert float(m_shaped["fitness_mean"][0]) < float(m_plain["fitness_mean"][0])  # hanging poles stop at step 11
    with pytest.raises(ConfigError, match="'train.fall_after' shapes the swing-up's fitness only; Acrobot-v1 needs "
                                          "null, got 5"):
        make_trainer(tiny(tmp_path / "ac", env={"name": "Acrobot-v1", "start": "hard"}, train={"fall_after": 5}))
    with pytest.raises(ConfigError, match="'train.fall_after' must be >= 0 or null, got -1"):
        tiny(tmp_path / "neg", train={"fall_after": -1})


def test_fall_credit_shapes_the_training_fitness_only_over_the_training_episode(tmp_path):
    env = {"start": "hard", "max_steps": 120}
    credit = make_trainer(tiny(tmp_path / "c", env=env, train={"fall_after": 10, "fall_credit": 0.5,
                                                               "episode_steps": 60}))
    fall = make_trainer(tiny(tmp_path / "f", env=env, train={"fall_after": 10, "episode_steps": 60}))
    f = fitness_of(credit)
    assert f.fall_credit == 0.5 and f.episode_steps == 60  # the steps left are a training episode's
    assert credit.env == fall.env and credit.env_params.max_steps_in_episode == 120
    (_, m_credit), (_, m_fall) = credit.run(credit.init(), 1), fall.run(fall.init(), 1)
    # hanging poles end at step 11 on the track: each such episode gains 0.5 * 49
    assert float(m_credit["fitness_mean"][0]) > float(m_fall["fitness_mean"][0]) + 5
    with pytest.raises(ConfigError, match="'train.fall_credit' pays episodes ended by train.fall_after, which is null"):
        tiny(tmp_path / "no", train={"fall_credit": 0.5})
    with pytest.raises(ConfigError, match=r"'train.fall_credit' must be in \[0, 1\], got 2"):
        tiny(tmp_path / "big", train={"fall_after": 10, "fall_credit": 2})


def test_cart_only_steps_shape_the_training_fitness_only(tmp_path):
    env = {"start": "easy", "max_steps": 60}  # near hanging at rest: the pole factor is ~0, the cart factor ~1
    shaped = make_trainer(tiny(tmp_path / "run", env=env, train={"cart_only_steps": 20}))
    plain = make_trainer(tiny(tmp_path / "plain", env=env))
    assert fitness_of(shaped).cart_only_steps == 20 and shaped.env == plain.env
    flat = shaped.mean_flat(shaped.init())
    assert np.array_equal(make_evaluator(shaped, 8)(flat), make_evaluator(plain, 8)(flat))  # held-out: the paper's
    (_, m_shaped), (_, m_plain) = shaped.run(shaped.init(), 1), plain.run(plain.init(), 1)
    # the same members and episodes: the first 20 steps pay ~1 each instead of ~0
    assert float(m_shaped["fitness_mean"][0]) > float(m_plain["fitness_mean"][0]) + 15
    with pytest.raises(ConfigError, match="'train.cart_only_steps' shapes the swing-up's fitness only; Pendulum-v1 "
                                          "needs 0, got 5"):
        make_trainer(tiny(tmp_path / "pd", env={"name": "Pendulum-v1", "start": "hard"}, train={"cart_only_steps": 5}))
    with pytest.raises(ConfigError, match="'train.cart_only_steps' must be >= 0, got -1"):
        tiny(tmp_path / "neg", train={"cart_only_steps": -1})


def test_start_scale_shrinks_the_training_starts_only(tmp_path):
    cfg = tiny(tmp_path / "run", env={"start": "hard", "max_steps": 60}, train={"start_scale": 0.2})
    plain = make_trainer(tiny(tmp_path / "plain", env={"start": "hard", "max_steps": 60}))
    shaped = make_trainer(cfg)
    assert fitness_of(shaped).start_scale == 0.2 and shaped.env == plain.env
    flat = shaped.mean_flat(shaped.init())
    assert np.array_equal(make_evaluator(shaped, 8)(flat), make_evaluator(plain, 8)(flat))  # held-out: hard
    (_, m_shaped), (_, m_plain) = shaped.run(shaped.init(), 1), plain.run(plain.init(), 1)
    # the same members: a pole that starts near hanging at rest earns little; wild starts fling it over the top
    assert float(m_shaped["fitness_mean"][0]) < 0.6 * float(m_plain["fitness_mean"][0])
    with pytest.raises(ConfigError, match="'train.start_scale' scales the hard start only; env.start is 'easy', so "
                                          "it needs 1, got 0.5"):
        make_trainer(tiny(tmp_path / "easy", env={"start": "easy"}, train={"start_scale": 0.5}))
    with pytest.raises(ConfigError, match="'train.start_scale' shapes the swing-up's fitness only; CartPole-v1"):
        make_trainer(tiny(tmp_path / "v1", env={"name": "CartPole-v1", "start": "hard"}, train={"start_scale": 0.5}))
    with pytest.raises(ConfigError, match="'train.start_scale' must be <= 1, got 1.5"):
        tiny(tmp_path / "bad", train={"start_scale": 1.5})


def test_eval_every_below_log_every_is_honoured_and_the_run_is_unchanged(tmp_path):
    """train.eval_every 5 with log_every 10 scores the mean at 5, 10, 15, 20 (it was coarsened to 10 and 20), and
    the shorter compiled chunks leave the search itself bit for bit as it was."""
    coarse = tiny(tmp_path / "coarse", train={"generations": 20, "log_every": 10})
    fine = tiny(tmp_path / "fine", train={"generations": 20, "log_every": 10, "eval_every": 5, "eval_episodes": 3})
    tr_c, state_c, _ = train(coarse, progress=False)
    tr_f, state_f, _ = train(fine, progress=False)
    assert [int(r["generation"]) for r in read_csv(tmp_path / "fine", "eval.csv")] == [5, 10, 15, 20]
    np.testing.assert_array_equal(np.asarray(tr_c.mean_flat(state_c)), np.asarray(tr_f.mean_flat(state_f)))
    assert [r["generation"] for r in read_csv(tmp_path / "fine")] == list(range(1, 21))


def test_metrics_csv_columns_are_the_trainers_metric_names():
    """One definition of the logged statistics: the trainer's fitness_metrics, which metrics.csv, the host loop and
    the pycma reference all write."""
    from pinn_jax.training.metrics import COLUMNS
    from pinn_jax.training.trainer import fitness_metrics

    names = tuple(fitness_metrics(np.array([1.0, np.nan, 3.0]), 3.0, np))
    assert COLUMNS == ("generation", *names, "gens_per_sec", "wall_time")
    assert fitness_metrics(np.array([1.0, np.nan, 3.0]), 3.0, np)["fitness_mean"] == 2.0


def test_a_resume_records_the_settings_it_changes_and_refuses_another_out(tmp_path, capsys):
    """config.yaml holds the settings a run goes on with; overrides.yaml the history of what each resume changed.
    ``--resume RUN --out OTHER`` is refused in one line (it used to ignore --out)."""
    run = tmp_path / "run"
    train(tiny(run, train={"generations": 2, "log_every": 1}), progress=False)
    assert not (run / artifacts.OVERRIDES_FILE).exists()
    assert main(["--resume", str(run), "--set", "train.generations=3", "--no-progress"]) == 0
    assert main(["--resume", str(run), "--set", "train.generations=4", "--set", "train.eval_every=2",
                 "--no-progress"]) == 0
    assert ckpt.load_config(run).train.generations == 4 and ckpt.load_config(run).train.eval_every == 2
    history = yaml.safe_load((run / artifacts.OVERRIDES_FILE).read_text())
    assert history == [{"generation": 2, "set": ["train.generations=3"]},
                       {"generation": 3, "set": ["train.generations=4", "train.eval_every=2"]}]
    assert main(["--resume", str(run), "--no-progress"]) == 0  # nothing to do, nothing changed: nothing recorded
    assert len(yaml.safe_load((run / artifacts.OVERRIDES_FILE).read_text())) == 2
    capsys.readouterr()
    other = tmp_path / "other"
    assert main(["--resume", str(run), "--out", str(other), "--set", "train.generations=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --resume continues {run} in place, so --out {other} would not be used; drop --out, or "
                   f"start a new run from it: --config {run}/config.yaml --set strategy.init_mean={run} --out {other}")
    assert not other.exists() and ckpt.load_config(run).train.generations == 4


def test_the_status_line_labels_the_held_out_score_as_the_best_so_far(tmp_path, capsys):
    """Beside the latest generation's mean, the held-out score shown is the best so far, and says so."""
    import re

    cfg = tiny(tmp_path / "run", train={"generations": 4, "eval_every": 2, "eval_episodes": 3, "log_every": 2})
    train(cfg, progress=False, status=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gen ")]
    assert lines and "best held-out" in lines[-1]
    assert not any(re.search(r"(?<!best )held-out", line) for line in lines)
