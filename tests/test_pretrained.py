"""Shipped agents: they load, match their configs, and still score (catches env/policy regressions)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinn_jax import config as config_lib
from pinn_jax import configs
from pinn_jax.envs import ObsTransform
from pinn_jax.errors import ModelError
from pinn_jax.experiment import build_env, setup
from pinn_jax.models import load_model, pretrained
from pinn_jax.rollout import episode
from pinn_jax.training.runs import resolve_start

NAMES = pretrained.available()
ROOT = pathlib.Path(__file__).resolve().parents[1]
KEPT = sorted(p.parent for p in (ROOT / "docs" / "agents").glob("*/*.json"))  # stages kept beside the docs


def test_some_models_are_shipped():
    assert "cartpole_mlp" in NAMES
    assert all(pretrained.checks(name) for name in NAMES)  # every shipped model has a regression threshold


CHECKS = [(name, i) for name in NAMES for i in range(len(pretrained.checks(name)))]


def mean_return(policy, params, cfg, check) -> float:
    """The mean return over the episodes a ``check`` entry of an agent's metadata names."""
    transform = ObsTransform(shuffle=check["shuffle"], num_noise=check.get("num_noise", 0))
    env_cfg = dataclasses.replace(cfg.env, start=check.get("start", cfg.env.start))  # image envs keep their patches
    env, env_params = build_env(env_cfg, transform, policy=policy)
    run = jax.jit(jax.vmap(lambda k: episode(policy, env, env_params, params, k, env_cfg.max_steps).ret))
    keys = jax.random.split(jax.random.PRNGKey(check["seed"]), check["episodes"])
    return float(np.asarray(run(keys)).mean())


@pytest.mark.parametrize("name,index", CHECKS)
def test_shipped_model_scores_above_its_threshold(name, index):
    policy, params, cfg = pretrained.load(name)
    meta = pretrained.info(name)
    check = pretrained.checks(name)[index]
    assert ravel_pytree(params)[0].size == meta["num_params"]
    score = mean_return(policy, params, cfg, check)
    assert score > check["min_mean"], (name, check, score)


def test_intermediate_stages_are_kept_beside_the_docs_and_not_shipped():
    kept = {d.name for d in KEPT}
    assert {"cartpole_pi_stage1", "cartpole_pi_catch_stage1", "cartpole_pi_catch_large", "cartpole_pi_gain5",
            "cartpole_mlp2_easy"} <= kept
    assert not kept & set(NAMES)


@pytest.mark.parametrize("directory", KEPT, ids=[d.name for d in KEPT])
def test_a_kept_stage_loads_from_its_file_and_still_scores_its_threshold(directory):
    meta = json.loads((directory / f"{directory.name}.json").read_text())
    model = load_model(str(directory / f"{directory.name}.npz"))  # the config.yaml beside it names the policy
    assert model.config == config_lib.from_dict(meta["config"])
    assert ravel_pytree(model.params)[0].size == meta["num_params"]
    check = meta["check"][0] if isinstance(meta["check"], list) else meta["check"]
    score = mean_return(model.policy, model.params, model.config, check)
    assert score > check["min_mean"], (directory.name, check, score)


def test_shipped_configs_that_start_from_a_kept_stage_read_it(monkeypatch):
    """A config whose start is no longer shipped names the kept file, relative to a checkout's root."""
    monkeypatch.chdir(ROOT)
    kept = {str(d.relative_to(ROOT) / f"{d.name}.npz"): d for d in KEPT}
    starts = {name: cfg.strategy.init_mean for name in configs.available()
              if (cfg := config_lib.load(name)).strategy.init_mean.startswith("docs/")}
    assert set(starts) == {"cartpole_pi_bc2", "cartpole_pi_catch", "cartpole_pi_catch_large"}
    for name, init_mean in starts.items():
        assert init_mean in kept, (name, init_mean)
        exp = setup(config_lib.load(name))
        start = resolve_start(init_mean, exp, jax.random.PRNGKey(0))
        assert np.array_equal(start.flat, np.load(ROOT / init_mean)["params"])


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelError, match="no pretrained model 'nope' \\(available: "):
        pretrained.load("nope")


def test_list_names_every_model_with_its_size_and_how_it_was_made(capsys):
    assert pretrained.main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == NAMES
    for name, line in zip(NAMES, lines):
        meta = pretrained.info(name)
        assert f"({meta['num_params']} parameters)" in line
        made = f"distillation round {meta['distill_rounds'] - 1}" if "distill_rounds" in meta else \
            f"{meta['generations']} generations"
        assert made in line, line
        assert meta["config"]["env"]["name"] in line and meta["description"] in line  # where it acts, what it is
        ev = meta.get("evaluation")
        if ev:  # its held-out score with the standard error of that mean
            mean, std = ev.get("no_shuffle") or ev["shuffle"]
            sem = std / (ev["episodes"] - 1) ** 0.5
            assert f"{mean:.1f} ± {sem:.1f} (s.e.) over {ev['episodes']} episodes" in line
    assert sum("(s.e.)" in line for line in lines) >= len(NAMES) - 1  # only pendulum_pi_es has no score recorded


def test_a_one_stage_agent_is_named_after_the_config_that_made_it():
    """``--config NAME`` makes ``pretrained:NAME``: a shipped agent made by one stage of a shipped config has its
    name (``cartpole_pi_es`` is the ten-stage agent; the one-stage spinner's config is ``cartpole_pi_es_spinner``)."""
    from pinn_jax import configs

    one_stage = {n: pretrained.info(n)["lineage"][0]["config"] for n in NAMES
                 if len(pretrained.info(n).get("lineage", [])) == 1}
    assert "cartpole_pi_es_spinner" in one_stage and len(one_stage) >= 10
    for name, config in one_stage.items():
        assert config == f"{name}.yaml" and name in configs.available(), (name, config)
    assert "cartpole_pi_es" not in configs.available()  # the staged agent has no config of its name


def test_the_es_only_agent_has_an_es_only_lineage_from_zeros():
    meta = pretrained.info("cartpole_pi_es")
    stages = meta["lineage"]
    assert [s["stage"] for s in stages] == list(range(1, len(stages) + 1)) and len(stages) >= 2
    configs = [config_lib.from_dict(s["config"]) for s in stages]  # each one a config the package runs
    assert all(c.strategy.name == "CMA_ES" for c in configs)  # ES only: no distillation stage, no teacher
    assert configs[0].strategy.init_mean == "zeros"
    for prev, cfg in zip(stages, configs[1:]):  # each starts from the previous stage's mean
        assert cfg.strategy.init_mean.endswith(f"/checkpoints/{prev['generations']}")
    assert meta["config"] == stages[-1]["config"] and meta["generations"] == stages[-1]["generations"]
    assert meta["train_wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in stages))
