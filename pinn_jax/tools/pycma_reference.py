"""pycma, the official trainer's optimizer, on pinn_jax's fitness: a reference run to compare evosax's CMA-ES with.

``python -m pinn_jax pycma_reference --config cartpole_pi --generations 500 --out DIR`` runs pycma's
``ask``/``tell`` on the host. Every generation's population is scored by the same jitted
:func:`pinn_jax.rollout.evaluate_population` as :mod:`pinn_jax.train`, on the same episodes: the key chain
of :func:`pinn_jax.training.trainer.generation_keys` from the same seed, so with common random numbers generation
``g`` of both runs sees the same starts. Every ``train.eval_every`` generations the search mean plays
``train.eval_episodes`` held-out episodes (:func:`pinn_jax.training.trainer.make_evaluator`). Rows go into
``metrics.csv`` / ``eval.csv`` in train's format, with ``tell_s`` (host time of ask + tell) in
``pycma.csv``; the search mean every ``train.eval_every`` generations as ``mean_NNNNNN.npz``, beside the run's
``config.yaml`` (so that each is a model for ``diagnose``, ``evaluate`` or ``strategy.init_mean``).

pycma is optional: ``pip install 'pinn_jax[pycma]'``. Options are pycma's defaults except those the
official trainer passes (``popsize``, ``seed``: the config's, 42 for seed 0, as there), output switched
off, and the step-size rule: ``--sigma-adaptation csa`` (the default here) is cumulative step-size
adaptation, what pycma up to 4.4 used at every dimension, hence what the paper ran, and what evosax's
CMA_ES does; ``tpa`` is two-point adaptation, pycma 4.5's own default from dimension 300 on.
"""

from __future__ import annotations

import csv
import importlib
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pinn_jax import artifacts, config
from pinn_jax.errors import ArgumentParser, ConfigError, UserError, cli, positive_int, uint32
from pinn_jax.experiment import Experiment, setup
from pinn_jax.rollout import evaluate_population
from pinn_jax.training.metrics import MetricsWriter, eval_row
from pinn_jax.training.progress import Tracker
from pinn_jax.training.runs import resolve_start
from pinn_jax.training.trainer import fitness_metrics, generation_keys, make_evaluator, start_keys


def _cma() -> Any:
    try:
        return importlib.import_module("cma")
    except ImportError:
        raise UserError("pycma is not installed: pip install 'pinn_jax[pycma]' (or pip install cma)") from None


def fitness_fn(exp: Experiment) -> Callable[[np.ndarray, jax.Array], jax.Array]:
    """Jitted ``(flat population (P, D), episode key) -> mean return per member (P,)``, as in training."""
    cfg, tc = exp.cfg, exp.cfg.train

    def fitness(flat: jax.Array, key: jax.Array) -> jax.Array:
        population = jax.vmap(exp.unravel)(flat)
        returns = evaluate_population(exp.policy, exp.fitness_env, exp.env_params, population, key, tc.rollouts,
                                      cfg.train_steps, tc.common_random_numbers)
        return returns.mean(axis=1)

    return jax.jit(fitness)


def initial_mean(exp: Experiment) -> np.ndarray:
    init = exp.cfg.strategy.init_mean
    if init == "random":
        raise ConfigError("config key 'strategy.init_mean': 'random' is not supported by the pycma reference; "
                          "use zeros or a parameter file")
    start = resolve_start(init, exp, jax.random.PRNGKey(exp.cfg.seed))  # the key is read by 'random' only
    return np.asarray(ravel_pytree(start.mean)[0], np.float64)


SIGMA_RULES = {"csa": "CMAAdaptSigmaCSA", "tpa": "CMAAdaptSigmaTPA"}


def make_es(exp: Experiment, sigma_adaptation: str = "csa") -> Any:
    """A pycma ``CMAEvolutionStrategy`` as the official trainer builds it (popsize, seed), quiet, with the
    step-size rule ``sigma_adaptation`` (``csa`` or ``tpa``)."""
    cma = _cma()
    s = exp.cfg.strategy
    opts = {"popsize": s.population_size, "seed": exp.cfg.seed or 42,  # pycma reads seed 0 as "from the clock"
            "verbose": -9, "verb_log": 0, "verb_disp": 0,
            "AdaptSigma": getattr(cma.sigma_adaptation, SIGMA_RULES[sigma_adaptation])}
    return cma.CMAEvolutionStrategy(initial_mean(exp), s.sigma_init, opts)


def run(cfg: config.Config, generations: int, out: pathlib.Path, progress: bool = True,
        sigma_adaptation: str = "csa") -> list[dict[str, float]]:
    """Train ``generations`` generations with pycma; returns the held-out rows (also in ``out/eval.csv``)."""
    es = make_es(exp := setup(cfg), sigma_adaptation)
    fitness, held_out = fitness_fn(exp), make_evaluator(exp, cfg.train.eval_episodes)
    key = start_keys(jax.random.PRNGKey(cfg.seed))[0]  # the run key Trainer.init starts from
    tc = cfg.train
    artifacts.write_config(out, cfg.to_dict())  # each saved mean is then a model (diagnose, evaluate, init_mean)
    writer = MetricsWriter(out, tables=("train", "eval"))
    rows: list[dict[str, float]] = []
    start = time.perf_counter()
    with (out / artifacts.PYCMA_LOG).open("x", newline="") as f, Tracker(generations, "gen", bar=progress) as bar:
        extra = csv.writer(f)
        extra.writerow(["generation", "sigma", "tell_s", "fitness_s"])
        for gen in range(1, generations + 1):
            key, _, k_eval, _ = generation_keys(key)
            t0 = time.perf_counter()
            xs = np.asarray(es.ask())
            t1 = time.perf_counter()
            fit = np.asarray(fitness(jnp.asarray(xs, jnp.float32), k_eval), np.float64)
            t2 = time.perf_counter()
            es.tell(list(xs), list(-fit))  # pycma minimises
            t3 = time.perf_counter()
            writer.write({"generation": gen, **fitness_metrics(fit, -es.result.fbest, np),
                          "gens_per_sec": 1.0 / (t3 - t0), "wall_time": time.perf_counter() - start})
            extra.writerow([gen, es.sigma, (t1 - t0) + (t3 - t2), t2 - t1])
            if tc.eval_every and gen % tc.eval_every == 0:
                row = eval_row(gen, held_out(jnp.asarray(es.mean, jnp.float32)), time.perf_counter() - start)
                writer.write(row, table="eval")
                rows.append(row)
                writer.flush()
                f.flush()
                artifacts.save_flat(artifacts.pycma_mean_file(out, gen), es.mean.astype(np.float32))
            bar.advance(1, f"mean {fit.mean():.1f}  sigma {es.sigma:.4f}"
                        + (f"  held-out {rows[-1]['return_mean']:.1f}" if rows else ""))
    writer.close()
    return rows


@cli
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax pycma_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="config name or YAML path (strategy.name is ignored: pycma)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--seed", type=uint32, default=None, help="overrides the config's seed")
    p.add_argument("--generations", type=positive_int, required=True, help="number of generations")
    p.add_argument("--out", required=True, help="new output directory")
    p.add_argument("--sigma-adaptation", choices=sorted(SIGMA_RULES), default="csa",
                   help="pycma's step-size rule: csa (pycma <= 4.4, the paper's, evosax's) or tpa (pycma 4.5 at n >= 300)")
    p.add_argument("--no-progress", action="store_true", help="a status line every 30 s instead of a bar")
    args = p.parse_args(argv)
    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = config.load(args.config, overrides)
    out = artifacts.output_dir(args.out, "--out", empty=True)  # its logs are appended to: no other run's rows
    rows = run(cfg, args.generations, out, progress=not args.no_progress, sigma_adaptation=args.sigma_adaptation)
    if rows:
        best = max(rows, key=lambda r: r["return_mean"])
        print(f"held-out return of the pycma mean: best {best['return_mean']:.1f} at generation "
              f"{int(best['generation'])}; last {rows[-1]['return_mean']:.1f}; logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
