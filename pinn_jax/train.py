"""Train a policy with an evolution strategy.

    python -m pinn_jax.train --config configs/cartpole_pi.yaml [--set train.generations=50] [--run-dir DIR]
    python -m pinn_jax.train --resume RUN_DIR [--set train.generations=2000]

Writes ``RUN_DIR/config.yaml``, orbax checkpoints, ``metrics.csv``, TensorBoard events (``tb/``) and,
at the end, ``params.npz`` (flat best and mean parameters). With ``train.eval_every`` the distribution
mean is also scored on fixed held-out episodes (``eval.csv``), and the best-scoring mean so far is kept in
``eval_best.npz``. An existing run directory is never overwritten: pass ``--resume`` to continue it
exactly where it stopped.

Failures, and what they leave on disk (user errors are one line, ``error: ...``, exit code 2):

* ``--run-dir`` naming a file, or a place where nothing can be written, is refused before anything is
  created.
* One process at a time per run directory, for a fresh run and for ``--resume`` alike: a second one is
  refused with the pid holding ``RUN_DIR/.lock`` (:mod:`pinn_jax.training.rundir`). The lock dies with its process,
  so one left by a killed run never blocks. With ``jax.distributed``, process 0 holds it.
* A fresh run that fails before its first checkpoint is on disk removes the run directory it created
  (or, given an existing empty directory, what it wrote there), so the same command can simply be run
  again; the error says so. From the first checkpoint on, the directory stays and ``--resume``
  continues it. (A run killed with ``kill -9`` before that cannot clean up: ``--resume`` then says the
  directory has no checkpoint, and it can be deleted.)
* ``--resume`` starts from the newest *readable* checkpoint: each newer unreadable one is named on one line
  with its reason, and moved to ``checkpoints/<generation>.unreadable`` (kept, but out of the way, so that
  generation is written again); the run then goes on exactly as an uninterrupted one would.
* A checkpoint that cannot be written (disk full, read-only, ...) stops the run, naming the last checkpoint
  that is on disk; earlier checkpoints are left as they are, the failed one's partial files removed.
* SIGTERM and SIGINT (Ctrl-C) stop the run with exit code 130 after saving the current generation: a
  checkpoint or log row being written is finished first, and the message names the newest checkpoint
  committed on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import jax
import numpy as np
import yaml

from pinn_jax import artifacts
from pinn_jax.training import checkpoint as ckpt
from pinn_jax import config as config_lib
from pinn_jax import configs
from pinn_jax.training import distributed, rundir
from pinn_jax.config import Config, ConfigError
from pinn_jax.errors import ArgumentParser, CheckpointError, RunDirError, TrainingError, UserError, cli, one_line
from pinn_jax.training.metrics import MetricsWriter, eval_row, read_csv
from pinn_jax.training.progress import Tracker

if TYPE_CHECKING:  # the trainer (evosax) starts JAX's backend on import: not before jax.distributed.initialize
    from pinn_jax.training.trainer import TrainState, Trainer


def _is_main_process() -> bool:
    return jax.process_index() == 0


def _not_empty(run_dir: pathlib.Path) -> ConfigError:
    return ConfigError(f"run directory {run_dir} already exists and is not empty; "
                       f"continue it with --resume {run_dir} or choose another --run-dir")


def prepare_run_dir(run_dir: pathlib.Path, cfg: Config, lock: rundir.RunDirLock | None = None,
                    start: np.ndarray | None = None) -> list[pathlib.Path]:
    """Create a fresh run directory (:func:`train` has checked it is usable), refusing to touch one that already
    holds files; on process 0, take ``lock`` on it before writing ``config.yaml`` and, for a warm start, ``start``
    (the first search mean, read from ``strategy.init_mean``) as ``init_mean.npz``: the run keeps its exact start
    when the source moves on or is deleted.

    Returns the directories created (outermost first; empty when ``run_dir`` existed, empty), which
    :func:`pinn_jax.training.rundir.remove_created` takes to undo a run that fails before its first checkpoint.
    """
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise _not_empty(run_dir)
    distributed.barrier("pinn_jax.prepare_run_dir")  # every process has checked before process 0 writes
    if not _is_main_process():
        return []
    made = rundir.create(run_dir)
    if lock is not None:
        lock.acquire()  # a fresh run started at the same moment may hold it: that one's directory, leave it
    try:
        if any(p.name != rundir.LOCK_NAME for p in run_dir.iterdir()):  # another run got here first and finished
            raise _not_empty(run_dir)
        artifacts.write_config(run_dir, cfg.to_dict())
        if start is not None:
            artifacts.save_flat(run_dir / artifacts.INIT_MEAN_FILE, start, source=cfg.strategy.init_mean)
    except OSError as e:
        rundir.remove_created(run_dir, made)
        raise RunDirError(f"cannot write run directory {run_dir}: {e.strerror or one_line(e)}") from None
    return made


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


class _Interrupts:
    """SIGINT and SIGTERM as :class:`KeyboardInterrupt`: at once while generations are computed, but held back
    inside :meth:`held` blocks (logging, evaluation, checkpoint writes) until the block is done, so an
    interrupt never leaves a checkpoint or log row half written. Handlers are installed while the
    context is entered (main thread only; elsewhere signals cannot be handled anyway)."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            if handler is not None:
                signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._depth:
            self._pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def held(self, then_raise: bool = True) -> Iterator[None]:
        """Hold signals during the block; afterwards raise the one that came (unless ``then_raise`` is off)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._pending is not None and not self._depth:
            signum, self._pending = self._pending, None
            if then_raise:
                raise KeyboardInterrupt(f"signal {signum}")


def _has_checkpoint(run_dir: pathlib.Path) -> bool:
    """A committed checkpoint is on disk (orbax names a step's directory by its number only once committed)."""
    ckpt_dir = run_dir / artifacts.CHECKPOINTS_DIR
    return ckpt_dir.is_dir() and any(p.name.isdigit() and p.is_dir() for p in ckpt_dir.iterdir())


def train(cfg: Config, resume: bool = False, progress: bool = True, trainer: Trainer | None = None,
          status: bool = False) -> tuple[Trainer, TrainState, list[dict[str, float]]]:
    """Run (or continue) the experiment ``cfg`` in ``cfg.run_dir`` until ``cfg.train.generations``.

    ``progress`` shows a progress bar; ``status`` prints a one-line status on stderr every 30 s instead.

    Returns the trainer, the final state and the metrics rows logged by this call. See the module docstring
    for the run directory's lock and what a failure leaves behind.
    """
    distributed.initialize(cfg.distributed)  # no-op unless enabled and not yet initialised
    run_dir = pathlib.Path(cfg.run_dir)
    main = _is_main_process()
    rundir.check_usable(run_dir)  # before anything is created
    lock = rundir.RunDirLock(run_dir, enabled=main)  # with several processes, process 0 holds it
    created: list[pathlib.Path] | None = None  # a fresh run's own directories, once it holds the lock
    try:
        with _Interrupts() as interrupts:
            if resume:  # lock first: a second resume of a running run is refused before it compiles anything
                lock.acquire()
                if not _has_checkpoint(run_dir):
                    raise CheckpointError(f"{run_dir} has no checkpoint to resume: that run stopped before its first "
                                          f"one; delete the directory and start it again without --resume")
            from pinn_jax.training import runs, trainer as trainer_lib

            distributed.limit_lapack_threads()
            tr = trainer or trainer_lib.make_trainer(cfg, mesh=distributed.mesh_for(cfg))
            start = None
            if resume:
                state = tr.init()  # the target the checkpoint is restored into
            else:  # config.yaml names the checkpoint a run-directory init_mean starts from
                seed_key = jax.random.PRNGKey(cfg.seed)
                start = runs.resolve_start(cfg.strategy.init_mean, tr.exp, trainer_lib.start_keys(seed_key)[1])
                cfg = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, init_mean=start.init_mean))
                state = tr.init(start.mean)
            with interrupts.held():  # neither is cut short by a signal (it is raised once they are done)
                if resume:
                    state, _ = ckpt.restore(run_dir, state, set_aside=main)
                else:
                    created = prepare_run_dir(run_dir, cfg, lock, start.flat)
            state, rows = _run(cfg, tr, state, resume, progress, status, interrupts, trainer_lib.make_evaluator)
        return tr, state, rows
    except BaseException as e:
        if created is not None and main and not _has_checkpoint(run_dir) and rundir.remove_created(run_dir, created):
            note = (f"removed {run_dir}, which it created" if created
                    else f"emptied {run_dir} again") + " (the run stopped before its first checkpoint)"
            if isinstance(e, UserError):
                e.args = (f"{one_line(e)}; {note}",)
            else:
                print(f"note: {note}", file=sys.stderr, flush=True)
        raise
    finally:
        lock.release()


def _run(cfg: Config, tr: Trainer, state: TrainState, resume: bool, progress: bool, status_lines: bool,
         interrupts: _Interrupts,
         make_evaluator: Callable[..., Any]) -> tuple[TrainState, list[dict[str, float]]]:
    """The generation loop of :func:`train`, from ``state`` on, with its logs and checkpoints."""
    run_dir = pathlib.Path(cfg.run_dir)
    main = _is_main_process()
    # With several processes orbax's CheckpointManager must be called on all of them (it synchronises
    # them); they save the state as host numpy arrays, which orbax writes from process 0 only.
    multi = distributed.is_multiprocess()
    mngr = ckpt.manager(run_dir, keep_every=cfg.train.keep_every) if main or multi else None
    saveable = ckpt.to_numpy if multi else (lambda s: s)  # noqa: E731
    tc = cfg.train
    gen = int(state.generation)
    writer = None

    def last_saved() -> str:
        last = ckpt.latest_committed(mngr) if mngr else None
        return "no checkpoint yet" if last is None else f"last checkpoint: generation {last}"

    try:
        try:
            writer = MetricsWriter(run_dir, enabled=main, resume_from=gen if resume else None,
                                   tables=("train", "eval") if tc.eval_every else ("train",))
        except OSError as e:
            raise RunDirError(f"cannot write the logs in {run_dir}: {e.strerror or one_line(e)}") from None
        # wall_time counts on from where the restored generation was logged, so it is the run's total
        earlier = [r for r in read_csv(run_dir) if r["generation"] <= gen] if resume and main else []
        offset = earlier[-1]["wall_time"] if earlier else 0.0
        evaluator = make_evaluator(tr, tc.eval_episodes) if tc.eval_every and main else None
        kept = artifacts.eval_best_score(run_dir) if evaluator and resume else None
        best_eval = -np.inf if kept is None else kept
        rows: list[dict[str, float]] = []
        meta = lambda s: {"config": cfg.to_dict(), "generation": int(s.generation),  # noqa: E731
                          "num_params": tr.num_params,
                          "best_fitness": float(tr.strategy.best(s.es_state)[1])}
        bar = Tracker(tc.generations, "gen", bar=progress, completed=gen, enabled=main and (progress or status_lines))
        if not resume:
            writer.text("config", "```\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "```")
        start = time.perf_counter()
        try:
            with bar:
                while gen < tc.generations:
                    n = min(tc.log_every, tc.generations - gen)
                    t0 = time.perf_counter()
                    new_state, m = tr.run(state, n)
                    m = jax.device_get(m)
                    dt = time.perf_counter() - t0
                    with interrupts.held(), _disk_errors(run_dir, last_saved):
                        if m["nan_count"].sum() > 0:
                            bad = gen + 1 + int(np.argmax(m["nan_count"] > 0))
                            raise TrainingError(f"NaN fitness for {int(m['nan_count'].max())} members at generation "
                                                f"{bad}; stopping ({last_saved()}, left untouched)")
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
                            best_eval = _evaluate_mean(tr, state, evaluator, writer, run_dir,
                                                       offset + time.perf_counter() - start, best_eval)
                        writer.flush()
                        if mngr and (gen // tc.checkpoint_every > prev // tc.checkpoint_every or gen >= tc.generations):
                            ckpt.save(mngr, saveable(state), meta(state))
                    writer.scalars({"step_size": tr.strategy.step_size(state.es_state),
                                    "center_norm": np.linalg.norm(np.asarray(tr.mean_flat(state)))}, gen)
                    info = (f"best {rows[-1]['best_so_far']:.1f}  mean {rows[-1]['fitness_mean']:.1f}"
                            + (f"  held-out {best_eval:.1f}" if np.isfinite(best_eval) else "") + f"  {n / dt:.2f} gen/s")
                    bar.advance(n, info)
                with interrupts.held(), _disk_errors(run_dir, last_saved):
                    if main:
                        artifacts.save_run_params(run_dir, tr.strategy.best(state.es_state)[0], tr.mean_flat(state))
        except KeyboardInterrupt:
            with interrupts.held(then_raise=False):  # a second Ctrl-C does not cut this save short
                if mngr and not multi:  # an interrupt need not reach every process: no collective save then
                    try:
                        ckpt.save(mngr, state, meta(state))
                    except CheckpointError as e:
                        print(f"interrupted: {one_line(e)}", file=sys.stderr, flush=True)
                last = ckpt.latest_committed(mngr) if mngr else None
            if last is None:
                print(f"interrupted: no checkpoint is on disk in {run_dir}", file=sys.stderr, flush=True)
            else:
                print(f"interrupted: saved generation {last} in {run_dir}; continue with --resume {run_dir}",
                      file=sys.stderr, flush=True)
            raise
    finally:
        if writer is not None:
            writer.close()
        ckpt.close(mngr)
    return state, rows


@contextlib.contextmanager
def _disk_errors(run_dir: pathlib.Path, last_saved: Callable[[], str]) -> Iterator[None]:
    """Writing the logs or parameter files failed (disk full, ...): one line, not a traceback."""
    try:
        yield
    except OSError as e:
        raise RunDirError(f"cannot write to {run_dir}: {e.strerror or one_line(e)} ({last_saved()})") from None


def _evaluate_mean(tr: Trainer, state: TrainState, evaluator: Any, writer: MetricsWriter, run_dir: pathlib.Path,
                   wall_time: float, best_eval: float) -> float:
    """Score the distribution mean on the held-out episodes, log it, keep it if it is the best so far."""
    flat = np.asarray(tr.mean_flat(state))
    returns = np.asarray(evaluator(flat))
    gen = int(state.generation)
    writer.write(eval_row(gen, returns, wall_time), table="eval")
    if returns.mean() > best_eval:
        artifacts.save_eval_best(run_dir, flat, gen, float(returns.mean()))
        best_eval = float(returns.mean())
    return best_eval


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m pinn_jax.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", metavar="NAME_OR_PATH",
                   help="a shipped config by name (see --list-configs) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.generations=50 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the config's seed)")
    p.add_argument("--out", "--run-dir", dest="run_dir", metavar="DIR",
                   help="the run directory to write (default: the config's run_dir)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a one-line status every 30 s instead")
    p.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    args = p.parse_args(argv)
    if not (args.config or args.resume or args.list_configs):
        p.error("one of --config, --resume or --list-configs is required")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """The command line: exit code 0, 2 for a user error (one ``error: ...`` line), 130 when interrupted."""
    previous = signal.signal(signal.SIGTERM, _interrupt)  # schedulers stop jobs with SIGTERM: save like Ctrl-C
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli
def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        for name in configs.available():
            print(f"{name:<28} {configs.describe(name)}")
        return 0
    overrides = args.overrides + ([f"seed={args.seed}"] if args.seed is not None else [])
    if args.resume:
        cfg = resume_config(pathlib.Path(args.resume), overrides, args.config)
    else:
        cfg = config_lib.load(args.config, overrides)
        if args.run_dir:
            cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
    _, state, rows = train(cfg, resume=bool(args.resume), progress=not args.no_progress, status=args.no_progress)
    if not rows:
        print(f"nothing to do: {cfg.run_dir} already at generation {int(state.generation)}")
        return 0
    last = rows[-1]
    print(f"done: generation {int(last['generation'])}, best {last['best_so_far']:.2f}, "
          f"last mean {last['fitness_mean']:.2f}; run directory {cfg.run_dir}")
    print(_held_out_summary(cfg))
    return 0


def _held_out_summary(cfg: Config) -> str:
    """What the run scored on its held-out episodes (when it evaluated) and the commands to look at it."""
    evals = read_csv(cfg.run_dir, "eval.csv")
    which = "mean"
    lines = []
    if evals:
        best = max(evals, key=lambda r: r["return_mean"])
        first = evals[0]
        sem = best["return_std"] / max(cfg.train.eval_episodes - 1, 1) ** 0.5
        lines.append(f"held-out return of the search mean over {cfg.train.eval_episodes} episodes: "
                     f"{first['return_mean']:.1f} at generation {int(first['generation'])} -> best "
                     f"{best['return_mean']:.1f} ± {sem:.1f} (s.e.) at generation {int(best['generation'])} "
                     f"(kept in {artifacts.EVAL_BEST_FILE})")
        which = "eval_best"
    lines.append(f"next: python -m pinn_jax evaluate {cfg.run_dir} --params {which} --out {cfg.run_dir}/eval"
                 f"   # returns under shuffling and noise (for a swing-up run, --video {cfg.run_dir}/episode.gif "
                 f"films its median episode)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
