"""Train a policy with an evolution strategy.

    python -m pinn_jax.train --config configs/cartpole_pi.yaml [--set train.generations=50] [--run-dir DIR]
    python -m pinn_jax.train --resume RUN_DIR [--set train.generations=2000]

Writes ``RUN_DIR/config.yaml``, orbax checkpoints, ``metrics.csv``, TensorBoard events (``tb/``) and,
at the end, ``params.npz`` (flat best and mean parameters). With ``train.eval_every`` the distribution
mean is also scored on fixed held-out episodes (``eval.csv``), and the best-scoring mean so far is kept in
``eval_best.npz``. An existing run directory is never overwritten: pass ``--resume`` to continue it
exactly where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pinn_jax import checkpoint as ckpt
from pinn_jax import config as config_lib
from pinn_jax import distributed
from pinn_jax.config import Config, ConfigError
from pinn_jax.errors import TrainingError
from pinn_jax.metrics import MetricsWriter, read_csv

if TYPE_CHECKING:  # the trainer (evosax) starts JAX's backend on import: not before jax.distributed.initialize
    from pinn_jax.trainer import TrainState, Trainer


def _is_main_process() -> bool:
    return jax.process_index() == 0


def prepare_run_dir(run_dir: pathlib.Path, cfg: Config) -> None:
    """Create a fresh run directory, refusing to touch one that already holds files."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists and is not empty; "
                          f"continue it with --resume {run_dir} or choose another --run-dir")
    distributed.barrier("pinn_jax.prepare_run_dir")  # every process has checked before process 0 writes
    if _is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def resume_config(run_dir: pathlib.Path, overrides: list[str], config_path: str | None = None) -> Config:
    """The saved config of ``run_dir`` with overrides; a different ``--config`` must be compatible."""
    saved = ckpt.load_config(run_dir)
    cfg = config_lib.from_dict(config_lib.apply_overrides(saved.to_dict(), overrides))
    if config_path is not None:
        given = config_lib.load(config_path, overrides)
        bad = ckpt.incompatible_keys(saved, given)
        if bad:
            raise ckpt.CheckpointError(f"cannot resume {run_dir} with {config_path}: incompatible config keys "
                                       f"{', '.join(bad)}")
        cfg = given
    bad = ckpt.incompatible_keys(saved, cfg)
    if bad:
        raise ckpt.CheckpointError(f"cannot resume {run_dir}: overrides change {', '.join(bad)}")
    return dataclasses.replace(cfg, run_dir=str(run_dir))


def train(cfg: Config, resume: bool = False, progress: bool = True,
          trainer: Trainer | None = None) -> tuple[Trainer, TrainState, list[dict[str, float]]]:
    """Run (or continue) the experiment ``cfg`` in ``cfg.run_dir`` until ``cfg.train.generations``.

    Returns the trainer, the final state and the metrics rows logged by this call.
    """
    distributed.initialize(cfg.distributed)  # no-op unless enabled and not yet initialised
    from pinn_jax.trainer import make_evaluator, make_trainer

    run_dir = pathlib.Path(cfg.run_dir)
    tr = trainer or make_trainer(cfg, mesh=distributed.mesh_for(cfg))
    state = tr.init()
    if resume:
        state, _ = ckpt.restore(run_dir, state)
    else:
        prepare_run_dir(run_dir, cfg)
    main = _is_main_process()
    # With several processes orbax's CheckpointManager must be called on all of them (it synchronises
    # them); they save the state as host numpy arrays, which orbax writes from process 0 only.
    multi = distributed.is_multiprocess()
    mngr = ckpt.manager(run_dir) if main or multi else None
    saveable = ckpt.to_numpy if multi else (lambda s: s)  # noqa: E731
    tc = cfg.train
    gen = int(state.generation)
    writer = MetricsWriter(run_dir, enabled=main, resume_from=gen if resume else None)
    # wall_time counts on from where the restored generation was logged, so it is the run's total
    earlier = [r for r in read_csv(run_dir) if r["generation"] <= gen] if resume and main else []
    offset = earlier[-1]["wall_time"] if earlier else 0.0
    evaluator = make_evaluator(tr, tc.eval_episodes) if tc.eval_every and main else None
    best_eval = -np.inf
    if evaluator and resume and (run_dir / "eval_best.npz").is_file():
        with np.load(run_dir / "eval_best.npz") as kept:
            best_eval = float(kept["return_mean"])
    rows: list[dict[str, float]] = []
    meta = lambda s: {"config": cfg.to_dict(), "generation": int(s.generation),  # noqa: E731
                      "num_params": tr.num_params,
                      "best_fitness": float(tr.strategy.best(s.es_state)[1])}
    bar = Progress(TextColumn("[bold]gen {task.completed}/{task.total}"), BarColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not (progress and main))
    start = time.perf_counter()
    try:
        with bar:
            task = bar.add_task("train", total=tc.generations, completed=gen, info="compiling…")
            while gen < tc.generations:
                n = min(tc.log_every, tc.generations - gen)
                t0 = time.perf_counter()
                new_state, m = tr.run(state, n)
                m = jax.device_get(m)
                dt = time.perf_counter() - t0
                if m["nan_count"].sum() > 0:
                    bad = gen + 1 + int(np.argmax(m["nan_count"] > 0))
                    last = max(mngr.all_steps(), default=None) if mngr else None
                    raise TrainingError(f"NaN fitness for {int(m['nan_count'].max())} members at generation {bad}; "
                                        f"stopping (last checkpoint: generation {last}, left untouched)")
                state = new_state
                for i in range(n):
                    row = {k: float(m[k][i]) for k in ("fitness_max", "fitness_mean", "fitness_min",
                                                       "fitness_std", "best_so_far")}
                    row.update(generation=gen + i + 1, gens_per_sec=n / dt,
                               wall_time=offset + time.perf_counter() - start)
                    writer.write(row)
                    rows.append(row)
                prev, gen = gen, gen + n
                if evaluator and gen // tc.eval_every > prev // tc.eval_every:
                    best_eval = _evaluate_mean(tr, state, evaluator, writer, run_dir, offset + time.perf_counter() - start,
                                               best_eval)
                writer.flush()
                if mngr and (gen // tc.checkpoint_every > prev // tc.checkpoint_every or gen >= tc.generations):
                    ckpt.save(mngr, saveable(state), meta(state))
                bar.update(task, completed=gen, info=f"best {rows[-1]['best_so_far']:.1f}  "
                           f"mean {rows[-1]['fitness_mean']:.1f}  {n / dt:.2f} gen/s")
    except KeyboardInterrupt:
        if mngr and not multi:  # an interrupt need not reach every process: no collective save then
            ckpt.save(mngr, state, meta(state))
        saved = max(mngr.all_steps(), default=None) if multi else gen
        print(f"interrupted: saved generation {saved} in {run_dir}; continue with --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        writer.close()
    if main:
        np.savez(run_dir / "params.npz", best=np.asarray(tr.strategy.best(state.es_state)[0]),
                 mean=np.asarray(tr.mean_flat(state)))
    return tr, state, rows


def _evaluate_mean(tr: Trainer, state: TrainState, evaluator: Any, writer: MetricsWriter, run_dir: pathlib.Path,
                   wall_time: float, best_eval: float) -> float:
    """Score the distribution mean on the held-out episodes, log it, keep it if it is the best so far."""
    flat = np.asarray(tr.mean_flat(state))
    returns = np.asarray(evaluator(flat))
    gen = int(state.generation)
    writer.write({"generation": gen, "return_mean": returns.mean(), "return_std": returns.std(),
                  "return_median": np.median(returns), "return_min": returns.min(), "return_max": returns.max(),
                  "wall_time": wall_time}, table="eval")
    if returns.mean() > best_eval:
        np.savez(run_dir / "eval_best.npz", params=flat, generation=gen, return_mean=returns.mean())
        best_eval = float(returns.mean())
    return best_eval


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pinn_jax.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML config file (configs/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.generations=50 (repeatable)")
    p.add_argument("--run-dir", help="where to write the run (default: the config's run_dir)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not args.config and not args.resume:
        p.error("one of --config or --resume is required")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # schedulers stop jobs with SIGTERM: save like Ctrl-C
    try:
        return _main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.resume:
            cfg = resume_config(pathlib.Path(args.resume), args.overrides, args.config)
        else:
            cfg = config_lib.load(args.config, args.overrides)
            if args.run_dir:
                cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
        tr, state, rows = train(cfg, resume=bool(args.resume), progress=not args.no_progress)
    except (ConfigError, ckpt.CheckpointError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if rows:
        last = rows[-1]
        print(f"done: generation {int(last['generation'])}, best {last['best_so_far']:.2f}, "
              f"last mean {last['fitness_mean']:.2f}; run directory {cfg.run_dir}")
    else:
        print(f"nothing to do: {cfg.run_dir} already at generation {int(state.generation)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
