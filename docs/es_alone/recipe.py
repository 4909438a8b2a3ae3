"""Replay the ten ES-only stages that made ``pretrained:cartpole_pi_es``, in order, each from the previous stage's
run directory, and pick up where an earlier call stopped.

    python docs/es_alone/recipe.py runs/es_alone                 # all ten: ~4 h on one CPU core
    python docs/es_alone/recipe.py runs/es_alone --stages 2      # the first two only
    python docs/es_alone/recipe.py runs/es_alone --set train.rollouts=32   # an override for every stage

Each stage's config, seed and generation count come from the agent's metadata
(``pinn_jax.models.pretrained.info("cartpole_pi_es")["lineage"]``); stage k runs in ``OUT/kk_NAME`` (NAME: its run
in docs/es_alone/) until its generation count, and stage k + 1 starts from that run directory
(``strategy.init_mean: OUT/kk_NAME``, the mean of its last checkpoint). A stage whose last checkpoint is at its
generation count is skipped, one with an earlier checkpoint (Ctrl-C saves one) is resumed with ``resume=True``,
and any other is started. Overrides apply after the stage's own settings.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Sequence

import pinn_jax
from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import ArgumentParser, cli
from pinn_jax.models import pretrained

AGENT = "cartpole_pi_es"


def stages() -> list[dict[str, Any]]:
    """The agent's stages, first to last: ``stage``, ``config``, ``seed``, ``generations``, ``record``, ..."""
    return pretrained.info(AGENT)["lineage"]


def run_dir(out: pathlib.Path, stage: dict[str, Any]) -> pathlib.Path:
    """Where the stage runs: ``OUT/kk_NAME``, NAME the stage's record in docs/es_alone/."""
    return out / f"{stage['stage']:02d}_{pathlib.Path(stage['record'].split()[0]).name}"


def stage_config(stage: dict[str, Any], start: str, overrides: Sequence[str] = ()) -> Config:
    """The stage's recorded config, run for its generation count from ``start`` (``zeros`` or a run directory)."""
    fixed = [f"train.generations={stage['generations']}", f"strategy.init_mean={start}"]
    return config_lib.from_dict(config_lib.apply_overrides(stage["config"], fixed + list(overrides)))


def last_checkpoint(directory: pathlib.Path) -> int | None:
    """The generation of the newest committed checkpoint of a run directory (orbax names it by its number)."""
    ckpt_dir = directory / artifacts.CHECKPOINTS_DIR
    steps = [int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()] if ckpt_dir.is_dir() else []
    return max(steps, default=None)


def replay(out: str | pathlib.Path, overrides: Sequence[str] = (), last: int | None = None,
           progress: bool = False) -> list[pathlib.Path]:
    """Run stages 1 to ``last`` (default: all) under ``out``; returns their run directories."""
    out, dirs, start = pathlib.Path(out), [], "zeros"
    for stage in stages()[:last]:
        directory = run_dir(out, stage)
        cfg = stage_config(stage, start, overrides)
        done = last_checkpoint(directory)
        if done is not None and done >= cfg.train.generations:
            print(f"stage {stage['stage']}: {directory} is at generation {done}, done", flush=True)
        else:
            how = "resumed" if done is not None else f"from {start}"
            print(f"stage {stage['stage']}: {directory}, {how}, to generation {cfg.train.generations}", flush=True)
            pinn_jax.fit(cfg, resume=done is not None, run_dir=str(directory), progress=progress,
                         status=not progress)
        dirs.append(directory)
        start = str(directory)
    return dirs


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python docs/es_alone/recipe.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the folder that holds one run directory per stage")
    p.add_argument("--stages", type=int, default=len(stages()), help="run the first N stages")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value in every stage (repeatable)")
    p.add_argument("--progress", action="store_true", help="a progress bar instead of a status line every 30 s")
    args = p.parse_args(argv)
    if not 1 <= args.stages <= len(stages()):
        p.error(f"--stages must be between 1 and {len(stages())}, got {args.stages}")
    replay(args.out, args.overrides, args.stages, args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
