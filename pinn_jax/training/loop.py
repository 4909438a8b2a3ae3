"""The host loop around the pure trainer: the impure boundary of training.

:func:`train` owns a run directory from start to end: it checks and locks it, builds the trainer, resolves
where the search starts (or restores the newest readable checkpoint), then advances the compiled generations
chunk by chunk. After each chunk three small steps run inside one interrupt guard
(:class:`~pinn_jax.training.process.Interrupts`): :meth:`Session.log` (``metrics.csv``, TensorBoard),
:meth:`Session.evaluate` (held-out episodes of the mean, ``eval.csv``, ``eval_best.npz``) and
:meth:`Session.checkpoint` (orbax). SIGINT and SIGTERM are one mechanism: they stop the run after the current
step with a checkpoint of the last finished generation.

Failures, and what they leave on disk (user errors are one line, ``error: ...``, exit code 2 from the CLI):

* A ``run_dir`` naming a file, or a place where nothing can be written, is refused before anything is created.
* A run whose arrays cannot fit in the memory available is refused before anything is built or compiled, naming
  the config key that adds the most (:mod:`pinn_jax.training.memory`).
* One process at a time per run directory, for a fresh run and for a resume alike: a second one is refused with
  the pid holding ``RUN_DIR/.lock`` (:mod:`pinn_jax.training.rundir`). The lock dies with its process. With
  ``jax.distributed``, process 0 holds it.
* A fresh run that fails before its first checkpoint is on disk removes the run directory it created (or, given
  an existing empty directory, what it wrote there), so the same call can simply be made again; the error says
  so. From the first checkpoint on, the directory stays and a resume continues it.
* A resume starts from the newest *readable* checkpoint: each newer unreadable one is named on one line and moved
  to ``checkpoints/<generation>.unreadable``; the run then goes on exactly as an uninterrupted one would.
* A checkpoint that cannot be written (disk full, read-only, ...) stops the run, naming the last checkpoint on
  disk; earlier checkpoints are left as they are.
* SIGTERM and SIGINT stop the run (``KeyboardInterrupt``, exit code 130 from the CLI) after saving the current
  generation: a checkpoint or log row being written is finished first.

Errors name Python arguments (``resume=True``, ``run_dir``); the CLI (:mod:`pinn_jax.train`) words them as flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import jax
import numpy as np
import yaml

from pinn_jax import artifacts, envs
from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import CheckpointError, ConfigError, RunDirError, TrainingError, UserError, one_line
from pinn_jax.experiment import setup
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training import distributed, memory, process, rundir
from pinn_jax.training.metrics import MetricsWriter, eval_row, read_csv
from pinn_jax.training.progress import Tracker
from pinn_jax.training.runs import resolve_start
from pinn_jax.training.trainer import Trainer, TrainState, make_evaluator, make_trainer, start_keys

__all__ = ["train", "prepare_run_dir", "has_checkpoint", "not_empty_message", "no_checkpoint_message"]


def not_empty_message(run_dir: pathlib.Path) -> str:
    return (f"run directory {run_dir} already exists and is not empty; continue it (resume=True) or choose another "
            f"run_dir")


def no_checkpoint_message(run_dir: pathlib.Path) -> str:
    """Why a run directory without a checkpoint cannot be resumed, and how to go on without losing what it holds:
    parameters it saved as files (``params.npz``, ``eval_best.npz``) start a new run; else it stopped before its
    first checkpoint and holds nothing worth keeping."""
    saved = next((run_dir / name for name in (artifacts.PARAMS_FILE, artifacts.EVAL_BEST_FILE)
                  if (run_dir / name).is_file()), None)
    if saved is None:
        return (f"{run_dir} has no checkpoint to resume: that run stopped before its first one; delete the directory "
                f"and start it again without resume=True")
    return (f"{run_dir} has no checkpoint to resume (none in {artifacts.CHECKPOINTS_DIR}/); keep the directory, its "
            f"{saved.name} and logs, and go on in a new run: config {artifacts.config_file(run_dir)} with "
            f"strategy.init_mean={saved} and another run_dir")


def has_checkpoint(run_dir: pathlib.Path) -> bool:
    """A committed checkpoint is on disk (orbax names a step's directory by its number only once committed)."""
    ckpt_dir = run_dir / artifacts.CHECKPOINTS_DIR
    return ckpt_dir.is_dir() and any(p.name.isdigit() and p.is_dir() for p in ckpt_dir.iterdir())


def prepare_run_dir(run_dir: pathlib.Path, cfg: Config, lock: rundir.RunDirLock | None = None,
                    start: np.ndarray | None = None) -> list[pathlib.Path]:
    """Create a fresh run directory, refusing to touch one that already holds files; on process 0, take ``lock`` on
    it before writing ``config.yaml`` and, for a warm start, ``start`` (the first search mean, read from
    ``strategy.init_mean``) as ``init_mean.npz``: the run keeps its exact start when the source moves on or is
    deleted.

    Returns the directories created (outermost first; empty when ``run_dir`` existed, empty), which
    :func:`pinn_jax.training.rundir.remove_created` takes to undo a run that fails before its first checkpoint.
    """
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(not_empty_message(run_dir))
    distributed.barrier("pinn_jax.prepare_run_dir")  # every process has checked before process 0 writes
    if not _is_main_process():
        return []
    made = rundir.create(run_dir)
    if lock is not None:
        try:
            lock.acquire()  # a fresh run started at the same moment may hold it: that one's directory, leave it
        except RunDirError:
            if not any(run_dir.iterdir()):  # no lock file: this run's lock could not be written (a full disk)
                rundir.remove_created(run_dir, made)
            raise
    try:
        if any(p.name != rundir.LOCK_NAME for p in run_dir.iterdir()):  # another run got here first and finished
            raise ConfigError(not_empty_message(run_dir))
        artifacts.write_config(run_dir, cfg.to_dict())
        if start is not None:
            artifacts.save_flat(run_dir / artifacts.INIT_MEAN_FILE, start, source=cfg.strategy.init_mean)
    except OSError as e:
        rundir.remove_created(run_dir, made)
        raise RunDirError(f"cannot write run directory {run_dir}: {e.strerror or one_line(e)}") from None
    return made


def record_overrides(run_dir: pathlib.Path, cfg: Config, generation: int) -> list[str]:
    """A resume that changes settings (``train.generations``, ...) writes them to ``config.yaml`` and adds them, as
    ``KEY=VALUE`` at ``generation``, to the run's ``overrides.yaml``. Returns the changes (none: nothing written)."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    saved_cfg = ckpt.load_config(run_dir)
    saved, now = flat(saved_cfg.to_dict()), flat(cfg.to_dict())
    changes = [f"{k}={json.dumps(v)}" for k, v in now.items() if k != "run_dir" and saved.get(k) != v]
    if changes:
        try:
            artifacts.write_config(run_dir, {**cfg.to_dict(), "run_dir": saved_cfg.run_dir})
            artifacts.append_overrides(run_dir, generation, changes)
        except OSError as e:
            raise RunDirError(f"cannot write run directory {run_dir}: {e.strerror or one_line(e)}") from None
    return changes


def _is_main_process() -> bool:
    return jax.process_index() == 0


def train(cfg: Config, resume: bool = False, progress: bool = True, trainer: Trainer | None = None,
          status: bool = False, env: Any = None, policy: Any = None,
          note: str = "") -> tuple[Trainer, TrainState, list[dict[str, float]]]:
    """Run (or, with ``resume``, continue) ``cfg`` in ``cfg.run_dir`` until ``cfg.train.generations``.

    ``progress`` shows a progress bar; ``status`` prints a one-line status on stderr every 30 s instead; either one
    starts with ``note`` (when given) and :func:`header`, once the run's config has been found usable. ``trainer``
    replaces the one ``cfg`` describes; ``env`` and ``policy`` (a user's own gymnax env and policy object, see
    :func:`pinn_jax.experiment.setup`) replace the config's ``env.name`` and ``policy.name``. ``jax.distributed``
    must be initialised before (:func:`pinn_jax.train.train` does it). Returns the trainer, the final state and the metrics rows logged by this call.
    """
    run_dir = pathlib.Path(cfg.run_dir)
    main = _is_main_process()
    rundir.check_usable(run_dir)  # before anything is created
    lock = rundir.RunDirLock(run_dir, enabled=main)  # with several processes, process 0 holds it
    created: list[pathlib.Path] | None = None  # a fresh run's own directories, once it holds the lock
    # Once a signal has stopped the run, further ones are ignored until the clean-up below is done (Interrupts)
    with process.Interrupts() as interrupts:
        try:
            if resume:  # lock first: a second resume of a running run is refused before it compiles anything
                lock.acquire()
                if not has_checkpoint(run_dir):
                    raise CheckpointError(no_checkpoint_message(run_dir))
            process.limit_lapack_threads()
            if trainer is None:
                memory.check_training(cfg, env, policy)  # shapes only: before anything is allocated or compiled
            tr = trainer or make_trainer(setup(cfg, env, policy), mesh=distributed.mesh_for(cfg))
            if resume:
                with interrupts.held():  # a restore is not cut short by a signal (it is raised once done)
                    state, meta = ckpt.restore(run_dir, tr.init(), set_aside=main)
                    check_resumable(cfg, meta)
                    if main:
                        record_overrides(run_dir, cfg, int(state.generation))
            else:  # config.yaml names the checkpoint a run-directory init_mean starts from
                start = resolve_start(cfg.strategy.init_mean, tr.exp, start_keys(jax.random.PRNGKey(cfg.seed))[1])
                cfg = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, init_mean=start.init_mean))
                state = tr.init(start.mean)
                with interrupts.held():
                    created = prepare_run_dir(run_dir, cfg, lock, start.flat)
            with Session.open(cfg, tr, interrupts, state, resume) as session:
                first_lines = "\n".join(filter(None, [note, header(cfg, tr, env)]))
                state, rows = session.run(state, progress, status, first_lines)
            return tr, state, rows
        except BaseException as e:
            undo = created is not None and main and not has_checkpoint(run_dir)
            if undo and rundir.remove_created(run_dir, created):
                undone = (f"removed {run_dir}, which it created" if created
                          else f"emptied {run_dir} again") + " (the run stopped before its first checkpoint)"
                if isinstance(e, UserError):
                    e.args = (f"{one_line(e)}; {undone}",)
                else:
                    print(f"note: {undone}", file=sys.stderr, flush=True)
            raise
        finally:
            lock.release()


def header(cfg: Config, tr: Trainer, env: Any = None) -> str:
    """The line a run starts with: policy and its size, env, strategy, population × rollouts, run directory. An
    ``env.max_steps`` other than a gymnax env's own episode limit is pointed out (a config made for another env)."""
    if env is None:
        where = envs.label(cfg.env.name, cfg.env.start, cfg.env.max_steps)
        own = None if envs.is_swingup(cfg.env.name) else envs.make(cfg.env.name)[1].max_steps_in_episode
        if own is not None and own != cfg.env.max_steps:
            where += f" (env.max_steps; {cfg.env.name}'s own limit is {own})"
    else:
        where = f"your env {type(env[0] if isinstance(env, tuple) else env).__name__}, max {cfg.env.max_steps} steps"
    return (f"training {type(tr.policy).__name__} ({tr.num_params} parameters) on {where} with {cfg.strategy.name}, "
            f"population {cfg.strategy.population_size} × {cfg.train.rollouts} rollouts of {cfg.train_steps} steps, "
            f"{cfg.train.generations} generations; run directory {cfg.run_dir}")


def check_resumable(cfg: Config, meta: dict[str, Any]) -> None:
    """Refuse, in one line, to resume ``cfg.run_dir`` with a config (its ``config.yaml``, edited by hand, or the one
    given) that differs from the one its checkpoint (``meta``) was saved with in a key that may not change
    (:data:`~pinn_jax.training.checkpoint.RESUMABLE_KEYS`), or that scores the held-out evaluations on another
    number of episodes than those already in ``eval.csv`` and ``eval_best.npz``."""
    run_dir = pathlib.Path(cfg.run_dir)
    try:
        saved = config_lib.from_dict(meta["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"cannot resume {run_dir}: its checkpoint holds no readable config ({one_line(e)})") \
            from None
    bad = ckpt.incompatible_keys(saved, cfg)
    if bad:
        raise CheckpointError(f"cannot resume {run_dir}: its config.yaml (or the config given) changes "
                              f"{', '.join(bad)} from the config its checkpoint was saved with")
    kept = artifacts.eval_best_kept(run_dir)
    if kept is not None:
        episodes = saved.train.eval_episodes if kept[1] is None else kept[1]
        if episodes != cfg.train.eval_episodes:
            raise CheckpointError(f"cannot resume {run_dir}: its held-out scores ({artifacts.EVAL_FILE}, "
                                  f"{artifacts.EVAL_BEST_FILE}) are over {episodes} episodes; train.eval_episodes="
                                  f"{cfg.train.eval_episodes} would mix two protocols (keep {episodes}, or start a "
                                  f"new run)")


def next_stop(gen: int, cfg: Config) -> int:
    """The generation the next compiled chunk ends at: ``train.log_every`` generations on, but never past the end
    or a held-out evaluation (``train.eval_every``), so the mean is scored at every multiple of ``eval_every``."""
    tc = cfg.train
    stops = [gen + tc.log_every, tc.generations]
    if tc.eval_every:
        stops.append((gen // tc.eval_every + 1) * tc.eval_every)
    return min(stops)


@dataclass
class Session:
    """One call's worth of a run directory's host state: the trainer, the checkpoint manager, the logs, the held-out
    evaluator and the best held-out score so far. Built by :meth:`open`, driven by :meth:`run`."""

    cfg: Config
    tr: Trainer
    interrupts: process.Interrupts
    writer: MetricsWriter
    mngr: Any  # orbax CheckpointManager, or None on a process that does not save
    multi: bool  # several processes: every one takes part in a save
    evaluator: Any  # jitted flat params -> held-out returns, or None
    best_eval: float
    wall_offset: float  # wall time the run had spent before this call (a resume continues its count)
    started: float = field(default_factory=time.perf_counter)

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.cfg.run_dir)

    @classmethod
    @contextlib.contextmanager
    def open(cls, cfg: Config, tr: Trainer, interrupts: process.Interrupts, state: TrainState,
             resume: bool) -> Iterator[Session]:
        """The session of a run from ``state`` on; the logs and the checkpoint manager are closed on exit."""
        run_dir, main, tc = pathlib.Path(cfg.run_dir), _is_main_process(), cfg.train
        gen = int(state.generation)
        # With several processes orbax's CheckpointManager must be called on all of them (it synchronises them);
        # they save the state as host numpy arrays, which orbax writes from process 0 only.
        multi = distributed.is_multiprocess()
        mngr = ckpt.manager(run_dir, keep_every=tc.keep_every) if main or multi else None
        writer = None
        try:
            try:
                writer = MetricsWriter(run_dir, enabled=main, resume_from=gen if resume else None,
                                       tables=("train", "eval") if tc.eval_every else ("train",))
            except OSError as e:
                raise RunDirError(f"cannot write the logs in {run_dir}: {e.strerror or one_line(e)}") from None
            # wall_time counts on from where the restored generation was logged, so it is the run's total
            earlier = [r for r in read_csv(run_dir) if r["generation"] <= gen] if resume and main else []
            evaluator = make_evaluator(tr, tc.eval_episodes) if tc.eval_every and main else None
            kept = artifacts.eval_best_kept(run_dir) if evaluator and resume else None
            if not resume:
                writer.text("config", "```\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "```")
            yield cls(cfg=cfg, tr=tr, interrupts=interrupts, writer=writer, mngr=mngr, multi=multi,
                      evaluator=evaluator, best_eval=-np.inf if kept is None else kept[0],
                      wall_offset=earlier[-1]["wall_time"] if earlier else 0.0)
        finally:
            if writer is not None:
                writer.close()
            ckpt.close(mngr)

    def wall_time(self) -> float:
        return self.wall_offset + time.perf_counter() - self.started

    def last_saved(self) -> str:
        last = ckpt.latest_committed(self.mngr) if self.mngr else None
        return "no checkpoint yet" if last is None else f"last checkpoint: generation {last}"

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One host step: signals held until it is done, a failed write (disk full, ...) one line."""
        with self.interrupts.held():
            try:
                yield
            except OSError as e:
                raise RunDirError(f"cannot write to {self.run_dir}: {e.strerror or one_line(e)} "
                                  f"({self.last_saved()})") from None

    def run(self, state: TrainState, progress: bool, status: bool,
            first_lines: str = "") -> tuple[TrainState, list[dict[str, float]]]:
        """Advance ``state`` to ``train.generations``: compiled chunks, each followed by the host steps. With a bar
        or status lines, ``first_lines`` (:func:`header`) come first, and ``compiling…`` until the first chunk ends."""
        tc, main = self.cfg.train, _is_main_process()
        gen = int(state.generation)
        rows: list[dict[str, float]] = []
        bar = Tracker(tc.generations, "gen", bar=progress, completed=gen, enabled=main and (progress or status))
        try:
            with bar:
                if first_lines:
                    bar.log(first_lines)
                if gen < tc.generations:
                    bar.note("compiling…")
                while gen < tc.generations:
                    n = next_stop(gen, self.cfg) - gen
                    t0 = time.perf_counter()
                    new_state, metrics = self.tr.run(state, n)
                    metrics = jax.device_get(metrics)
                    dt = time.perf_counter() - t0
                    with self.step():  # log, evaluate, checkpoint: a signal waits until all three are done
                        _check_finite(metrics, gen, self.last_saved)
                        state, gen = new_state, gen + n
                        rows += self.log(metrics, gen - n, dt)
                        self.evaluate(state)
                        self.checkpoint(state, gen - n)
                    bar.advance(n, self.status(rows[-1], n / dt))
                with self.step():
                    if main:
                        artifacts.save_run_params(self.run_dir, self.tr.strategy.best(state.es_state)[0],
                                                  self.tr.mean_flat(state))
                    self.writer.hparams(self.cfg.to_dict(), self.scores(state), gen)
        except KeyboardInterrupt:
            self.save_on_interrupt(state)
            raise
        return state, rows

    def log(self, metrics: dict[str, np.ndarray], first: int, dt: float) -> list[dict[str, float]]:
        """One ``metrics.csv`` row per generation of the chunk that started after generation ``first``; its
        ``gens_per_sec`` is the chunk's (its generations over its ``dt``), the same on each of its rows."""
        n = len(metrics["nan_count"])
        rows = []
        for i in range(n):
            row = {"generation": first + i + 1}
            row.update({k: float(v[i]) for k, v in metrics.items() if k != "nan_count"})
            row.update(gens_per_sec=n / dt, wall_time=self.wall_time())
            self.writer.write(row)
            rows.append(row)
        self.writer.flush()
        return rows

    def evaluate(self, state: TrainState) -> None:
        """At a multiple of ``train.eval_every``: score the mean on the held-out episodes, log it, keep it if it is
        the best so far."""
        gen = int(state.generation)
        if self.evaluator is None or gen % self.cfg.train.eval_every:
            return
        flat = np.asarray(self.tr.mean_flat(state))
        returns = np.asarray(self.evaluator(flat))
        self.writer.write(eval_row(gen, returns, self.wall_time()), table="eval")
        self.writer.flush()
        if returns.mean() > self.best_eval:
            artifacts.save_eval_best(self.run_dir, flat, gen, float(returns.mean()), self.cfg.train.eval_episodes)
            self.best_eval = float(returns.mean())

    def checkpoint(self, state: TrainState, prev: int) -> None:
        """When the chunk from generation ``prev`` passed a multiple of ``train.checkpoint_every``, and at the end: an
        orbax checkpoint; TensorBoard's step size and mean norm after every chunk."""
        gen, tc = int(state.generation), self.cfg.train
        if self.mngr and (gen // tc.checkpoint_every > prev // tc.checkpoint_every or gen >= tc.generations):
            ckpt.save(self.mngr, ckpt.to_numpy(state) if self.multi else state, self.meta(state))
        self.writer.scalars({"step_size": self.tr.strategy.step_size(state.es_state),
                             "center_norm": np.linalg.norm(np.asarray(self.tr.mean_flat(state)))}, gen)

    def meta(self, state: TrainState) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "generation": int(state.generation), "num_params": self.tr.num_params,
                "best_fitness": float(self.tr.strategy.best(state.es_state)[1])}

    def scores(self, state: TrainState) -> dict[str, float]:
        """The run's final scores: best fitness, and the last and best held-out returns of the mean if it evaluates."""
        out = {"best_fitness": float(self.tr.strategy.best(state.es_state)[1])}
        held_out = read_csv(self.run_dir, artifacts.EVAL_FILE) if self.evaluator is not None else []
        if held_out:
            out.update(held_out_return=held_out[-1]["return_mean"], best_held_out_return=self.best_eval)
        return out

    def status(self, row: dict[str, float], gens_per_sec: float) -> str:
        held_out = f"  best held-out {self.best_eval:.1f}" if np.isfinite(self.best_eval) else ""
        return (f"best {row['best_so_far']:.1f}  mean {row['fitness_mean']:.1f}{held_out}  "
                f"{gens_per_sec:.2f} gen/s")

    def save_on_interrupt(self, state: TrainState) -> None:
        """Save the last finished generation after SIGINT/SIGTERM (a second signal does not cut it short)."""
        with self.interrupts.held(then_raise=False):
            if self.mngr and not self.multi:  # an interrupt need not reach every process: no collective save then
                try:
                    ckpt.save(self.mngr, state, self.meta(state))
                except CheckpointError as e:
                    print(f"interrupted: {one_line(e)}", file=sys.stderr, flush=True)
            last = ckpt.latest_committed(self.mngr) if self.mngr else None
        if last is None:
            print(f"interrupted: no checkpoint is on disk in {self.run_dir}", file=sys.stderr, flush=True)
        else:
            print(f"interrupted: saved generation {last} in {self.run_dir}; continue it with resume=True "
                  f"(python -m pinn_jax.train --resume {self.run_dir})", file=sys.stderr, flush=True)


def _check_finite(metrics: dict[str, np.ndarray], gen: int, last_saved: Any) -> None:
    """NaN fitness stops the run before anything of its chunk is kept."""
    nans = metrics["nan_count"]
    if nans.sum() > 0:
        bad = gen + 1 + int(np.argmax(nans > 0))
        raise TrainingError(f"NaN fitness for {int(nans.max())} members at generation {bad}; stopping "
                            f"({last_saved()}, left untouched)")
