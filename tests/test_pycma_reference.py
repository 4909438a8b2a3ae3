"""pinn_jax.tools.pycma_reference: pycma on the trainer's own fitness and episodes."""

from __future__ import annotations

import csv
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import tiny_dict
from jax.flatten_util import ravel_pytree

from pinn_jax import config as config_lib
from pinn_jax.experiment import setup
from pinn_jax.models import load_model
from pinn_jax.tools import pycma_reference
from pinn_jax.training.trainer import generation_keys, make_evaluator, make_trainer, start_keys


def test_fitness_and_episodes_are_the_trainers(tiny):
    """Generation 1 of the trainer, re-scored by the reference's fitness on the same key chain: equal."""
    cfg = tiny(train={"rollouts": 3})
    tr = make_trainer(cfg)
    state = tr.init()
    _, m = tr.run(state, 1)
    key = start_keys(jax.random.PRNGKey(cfg.seed))[0]  # what the reference starts from
    assert np.array_equal(np.asarray(key), np.asarray(state.key))
    _, k_ask, k_eval, _ = generation_keys(key)
    population, _ = tr.strategy.ask(k_ask, state.es_state)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(population)
    fit = np.asarray(pycma_reference.fitness_fn(setup(cfg))(jnp.asarray(flat), k_eval))
    assert fit.shape == (cfg.strategy.population_size,)
    np.testing.assert_allclose([fit.max(), fit.mean()], [float(m["fitness_max"][0]), float(m["fitness_mean"][0])],
                               rtol=1e-5)


def test_cli_logs_curve_and_means(tmp_path):
    """eval.csv holds a row every eval_every generations; each saved mean is a model (the run's config.yaml
    beside it) that replays its row's held-out mean."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict(str(tmp_path / "unused"), train={"eval_every": 2, "eval_episodes": 4})))
    out = tmp_path / "out"
    assert pycma_reference.main(["--config", str(path), "--generations", "4", "--out", str(out), "--no-progress"]) == 0
    with (out / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == [2, 4]
    with (out / "metrics.csv").open() as f:
        assert [int(r["generation"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    exp = setup(config_lib.load(path))
    held_out = make_evaluator(exp, 4)
    for r in rows:
        model = load_model(str(out / f"mean_{int(r['generation']):06d}.npz"))
        assert model.config.to_dict() == config_lib.load(path).to_dict()
        mean = ravel_pytree(model.params)[0]
        assert float(np.asarray(held_out(jnp.asarray(mean))).mean()) == pytest.approx(float(r["return_mean"]), rel=1e-5)
    sigmas = [float(r["sigma"]) for r in csv.DictReader((out / "pycma.csv").open())]
    assert len(sigmas) == 4 and sigmas[0] != sigmas[-1]  # pycma adapted its step size


def test_missing_pycma_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cma", None)  # what an environment without pycma sees
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict(str(tmp_path / "unused"))))
    rc = pycma_reference.main(["--config", str(path), "--generations", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: pycma is not installed: pip install 'pinn_jax[pycma]' (or pip install cma)"]


@pytest.mark.parametrize("rule, mirrored", [("tpa", True), ("csa", False)])
def test_sigma_rule_is_the_one_asked_for(tiny, rule, mirrored):
    """TPA (pycma 4.5's default from n >= 300) puts two mirrored line samples m' +- dm first; CSA does not."""
    es = pycma_reference.make_es(setup(tiny()), rule)
    xs = es.ask()
    es.tell(xs, list(np.arange(len(xs), dtype=float)))
    xs = np.asarray(es.ask())
    assert np.allclose(xs[0] + xs[1], 2 * es.mean) == mirrored
