"""Train a policy with an evolution strategy: the command line, and :func:`train`, the entry of every training.

    python -m pinn_jax.train --config NAME_OR_YAML [--set train.generations=50] [--out DIR]
    python -m pinn_jax.train --resume RUN_DIR [--set train.generations=2000]

Writes ``RUN_DIR/config.yaml``, orbax checkpoints, ``metrics.csv``, TensorBoard events (``tb/``) and, at the end,
``params.npz`` (flat best and mean parameters). With ``train.eval_every`` the distribution mean is also scored on
fixed held-out episodes (``eval.csv``), and the best-scoring mean so far is kept in ``eval_best.npz``. An existing
run directory is never overwritten: pass ``--resume`` to continue it exactly where it stopped. What a failure
leaves on disk, and how signals stop a run, is in :mod:`pinn_jax.training.loop`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import TYPE_CHECKING, Any, Sequence

from pinn_jax import artifacts, configs
from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import ArgumentParser, ConfigError, TrainingError, UserError, cli, one_line, uint32
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training import process
from pinn_jax.training.metrics import read_csv

if TYPE_CHECKING:
    from pinn_jax.training.trainer import Trainer, TrainState

__all__ = ["train", "main", "resume_config", "TrainingError"]


def train(config: Config | str, resume: bool = False, progress: bool = True, trainer: Trainer | None = None,
          status: bool = False, *, env: Any = None, policy: Any = None, run_dir: str | None = None,
          overrides: Sequence[str] = (), note: str = "") -> tuple[Trainer, TrainState, list[dict[str, float]]]:
    """Train (or, with ``resume``, continue) until ``train.generations``; the run lives in ``run_dir`` (default: the
    config's ``run_dir``). Returns the trainer, the final state and the metrics rows logged by this call::

        tr, state, rows = pinn_jax.fit("quick", run_dir="runs/q", overrides=["train.generations=20"])
        params = tr.mean_params(state)

    ``config``: a :class:`~pinn_jax.config.Config`, a shipped config's name or a YAML path; ``overrides`` are
    ``"section.key=value"`` strings. ``env`` (a gymnax ``Environment``, or ``(env, env_params)``) and ``policy`` (an
    object meeting :class:`~pinn_jax.policies.Policy`) replace the ones the config names; resuming such a run takes
    the same objects again. ``progress`` shows a bar, ``status`` a line every 30 s; either starts with ``note`` (when
    given) and a line saying what the run trains. ``jax.distributed`` is
    initialised first when ``config.distributed`` asks for it (:mod:`pinn_jax.training.loop` has the rest).
    """
    if isinstance(config, Config):
        cfg = config_lib.from_dict(config_lib.apply_overrides(config.to_dict(), list(overrides))) if overrides else config
    else:
        cfg = config_lib.load(config, list(overrides))
    if run_dir is not None:
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    process.initialize(cfg.distributed)  # no-op unless enabled and not yet initialised
    # The one lazy import: the training modules start JAX's backend on import (gymnax, evosax), which must wait
    # for jax.distributed.initialize.
    from pinn_jax.training import loop

    return loop.train(cfg, resume=resume, progress=progress, trainer=trainer, status=status, env=env, policy=policy,
                      note=note)


def resume_config(run_dir: pathlib.Path, overrides: list[str], config_path: str | None = None) -> Config:
    """The saved config of ``run_dir`` with overrides; a different ``--config`` must be compatible. A refusal says
    how to go on with the new settings instead: a new run that starts from this one's search mean."""
    saved = ckpt.load_config(run_dir)
    cfg = config_lib.from_dict(config_lib.apply_overrides(saved.to_dict(), overrides))
    instead = (f"to go on with new settings, start a new run from it: --config "
               f"{config_path or artifacts.config_file(run_dir)} --set strategy.init_mean={run_dir} --out NEW")
    if config_path is not None:
        given = config_lib.load(config_path, overrides)
        bad = ckpt.incompatible_keys(saved, given)
        if bad:
            raise ckpt.CheckpointError(f"cannot resume {run_dir} with {config_path}: incompatible config keys "
                                       f"{', '.join(bad)}; {instead}")
        cfg = given
    bad = ckpt.incompatible_keys(saved, cfg)
    if bad:
        raise ckpt.CheckpointError(f"cannot resume {run_dir}: overrides change {', '.join(bad)}; {instead}")
    return dataclasses.replace(cfg, run_dir=str(run_dir))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m pinn_jax.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", metavar="NAME_OR_PATH",
                   help="a shipped config by name (see --list-configs) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.generations=50 (repeatable)")
    p.add_argument("--seed", type=uint32, default=None, help="the run's seed (default: the config's seed)")
    p.add_argument("--out", "--run-dir", dest="run_dir", metavar="DIR",
                   help="the run directory to write (default: the config's run_dir)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a one-line status every 30 s instead")
    p.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    args = p.parse_args(argv)
    for flag, value in (("--config", args.config), ("--out", args.run_dir), ("--resume", args.resume)):
        if value is not None and not value.strip():  # '' is no path: never "the default" nor "."
            p.error(f"{flag} must not be empty")
    if not (args.config or args.resume or args.list_configs):
        p.error("one of --config, --resume or --list-configs is required")
    return args


# How the training library's errors, which name Python arguments, read on this command line.
_FLAGS = {"(resume=True)": "(--resume RUN_DIR)", "without resume=True": "without --resume",
          "another run_dir": "another --out", "continue it with resume=True": "continue it with --resume RUN_DIR",
          "a new run: config ": "a new run: --config ", " with strategy.init_mean=": " --set strategy.init_mean="}


def main(argv: list[str] | None = None) -> int:
    """The command line: exit code 0, 2 for a user error (one ``error: ...`` line), 130 when interrupted
    (Ctrl-C or SIGTERM: the run saves a checkpoint first, see :mod:`pinn_jax.training.loop`; further signals are
    then ignored while the process exits)."""
    return _main(argv)


@cli
def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        for name in configs.available():
            print(f"{name:<28} {configs.describe(name)}")
        return 0
    overrides = args.overrides + ([f"seed={args.seed}"] if args.seed is not None else [])
    if args.resume is not None:
        if args.run_dir and pathlib.Path(args.run_dir).resolve() != pathlib.Path(args.resume).resolve():
            raise ConfigError(f"--resume continues {args.resume} in place, so --out {args.run_dir} would not be used; "
                              f"drop --out, or start a new run from it: --config {args.resume}/config.yaml "
                              f"--set strategy.init_mean={args.resume} --out {args.run_dir}")
        cfg = resume_config(pathlib.Path(args.resume), overrides, args.config)
    else:
        cfg = config_lib.load(args.config, overrides)
        if args.run_dir is not None:
            cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
    try:
        note = "" if args.resume else _kept_from_base(args.config, cfg)
        with process.Interrupts(exiting=True):  # a stop, once under way, is not cut short: neither it nor the exit
            _, state, rows = train(cfg, resume=bool(args.resume), progress=not args.no_progress,
                                   status=args.no_progress, note=note)
    except UserError as e:  # the library names Python arguments: say it in this command's flags
        message = one_line(e)
        for python, flag in _FLAGS.items():
            message = message.replace(python, flag)
        raise type(e)(message) from None
    if not rows:
        print(f"nothing to do: {cfg.run_dir} already at generation {int(state.generation)}")
        return 0
    last = rows[-1]
    print(f"done: generation {int(last['generation'])}, best {last['best_so_far']:.2f}, "
          f"last mean {last['fitness_mean']:.2f}; run directory {cfg.run_dir}")
    print(_held_out_summary(cfg))
    return 0


def _kept_from_base(config: str, cfg: Config) -> str:
    """When ``--set env.name=...`` moved the config to another env: one line saying what the rest of the base
    config still sets (made for its own env: episode length, policy, search), else ''."""
    base = config_lib.load(config)
    if cfg.env.name == base.env.name:
        return ""
    return (f"note: env.name {cfg.env.name} replaces {base.env.name}; the rest comes from {config}: env.max_steps "
            f"{cfg.env.max_steps}, policy {cfg.policy.name}, {cfg.strategy.name} population "
            f"{cfg.strategy.population_size} × {cfg.train.rollouts} rollouts, {cfg.train.generations} generations "
            f"(change any with --set)")


def _held_out_summary(cfg: Config) -> str:
    """What the run scored on its held-out episodes (when it evaluated) and the commands to look at it."""
    evals = read_csv(cfg.run_dir, artifacts.EVAL_FILE)
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
