"""Learning curves of several runs: held-out return against generations and against wall-clock time.

``python -m pinn_jax curves --run LABEL=RUN_DIR ... --out docs/es_alone/curves.png --target 472`` reads each
run's ``eval.csv`` (written by :mod:`pinn_jax.train` with ``train.eval_every``, or by
:mod:`pinn_jax.tools.pycma_reference`) and draws both panels, with the target and the paper's budget marked.
A run given as ``LABEL=DIR1+DIR2`` is a staged run: the second stage's generations and seconds continue
after the first's. ``DIR@N`` ends a stage at generation N, the mean the next stage started from; its seconds
there are interpolated between held-out rows (past the last row, at the stage's own pace). A stage whose
``config.yaml`` holds out another start distribution than the last stage's (a curriculum's upright or easy
stage) is counted in generations and seconds but not drawn. It prints, per run, the best held-out mean and the
first generation and time that reached the target.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pinn_jax import artifacts
from pinn_jax.errors import ArgumentParser, UserError, cli, finite_float, positive_float
from pinn_jax.study.plots import plot_curves
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training.metrics import read_csv

PAPER_GENERATIONS = 14_000  # the paper's CMA-ES budget for the cart-pole attention neuron


@dataclass(frozen=True)
class Curve:
    label: str
    generation: np.ndarray
    seconds: np.ndarray
    held_out: np.ndarray
    stages: tuple[int, ...]  # generation at which each later stage starts
    not_drawn: tuple[str, ...] = ()  # stages held out on another start than the last: why each is not drawn

    def first_reaching(self, target: float) -> tuple[int, float] | None:
        """First (generation, seconds) whose held-out mean is >= target, or None."""
        hit = np.flatnonzero(self.held_out >= target)
        return None if hit.size == 0 else (int(self.generation[hit[0]]), float(self.seconds[hit[0]]))


def _held_out_start(run_dir: pathlib.Path) -> str | None:
    """The start distribution a run's held-out episodes use (its config's ``env.start``), None without a config."""
    return ckpt.load_config(run_dir).env.start if artifacts.config_file(run_dir).exists() else None


def _stage(label: str, spec: str | pathlib.Path) -> tuple[pathlib.Path, list[dict], float | None, float | None]:
    """A stage's directory, its held-out rows up to its end, and its end (generation, seconds) when cut."""
    text = str(spec)
    path, _, cut = text.rpartition("@") if "@" in pathlib.Path(text).name else (text, "", "")
    d = pathlib.Path(path)
    rows = read_csv(d, artifacts.EVAL_FILE)
    if not rows:
        raise UserError(f"--run {label}: {d} has no {artifacts.EVAL_FILE} rows (train with train.eval_every > 0)")
    if not cut:
        return d, rows, None, None
    if not cut.isdigit() or int(cut) < 1:
        raise UserError(f"--run {label}: expected DIR@GENERATION with a generation >= 1, got {text!r}")
    end = int(cut)
    g = np.array([r["generation"] for r in rows], float)
    t = np.array([r["wall_time"] for r in rows], float)
    if end <= g[-1]:
        seconds = float(np.interp(end, np.r_[0.0, g], np.r_[0.0, t]))
    else:
        seconds = float(t[-1] + (end - g[-1]) * t[-1] / g[-1])
    return d, [r for r in rows if r["generation"] <= end], float(end), seconds


def load_curve(label: str, dirs: Sequence[str | pathlib.Path]) -> Curve:
    """One curve from the ``eval.csv`` of one run directory or of several stages, one after the other
    (``DIR@N``: the stage ends at generation N). Stages held out on another start than the last are not drawn."""
    stages_in = [_stage(label, d) for d in dirs]
    starts = [_held_out_start(d) for d, *_ in stages_in]
    final_start = starts[-1]
    gens, secs, vals, stages, not_drawn = [], [], [], [], []
    g0 = s0 = 0.0
    for i, ((d, rows, end, end_s), start) in enumerate(zip(stages_in, starts)):
        if i:
            stages.append(int(g0))
        if start is None or final_start is None or start == final_start:
            gens += [g0 + r["generation"] for r in rows]
            secs += [s0 + r["wall_time"] for r in rows]
            vals += [r["return_mean"] for r in rows]
        else:
            not_drawn.append(f"{d} holds out {start!r} starts, not {final_start!r}: counted in generations "
                             f"and seconds, not drawn")
        g0 += rows[-1]["generation"] if end is None else end
        s0 += rows[-1]["wall_time"] if end_s is None else end_s
    if not gens:
        raise UserError(f"--run {label}: no stage is held out on the last stage's start")
    return Curve(label, np.array(gens), np.array(secs), np.array(vals), tuple(stages), tuple(not_drawn))


def _run_arg(text: str) -> tuple[str, list[str]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise argparse.ArgumentTypeError(f"expected LABEL=RUN_DIR[@N][+RUN_DIR[@N]...], got {text!r}")
    return label, dirs.split("+")


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=_run_arg, action="append", required=True, metavar="LABEL=DIR[@N][+DIR[@N]...]",
                   help="a run (or its stages, in order; @N: the stage ends at generation N) to draw")
    p.add_argument("--out", required=True, help="figure file (png, pdf, svg)")
    p.add_argument("--force", action="store_true",
                   help="replace --out when it exists (else it is refused before anything is read)")
    p.add_argument("--target", type=finite_float, default=None, help="held-out return to reach")
    p.add_argument("--hours", type=positive_float, default=None, help="a wall-clock budget to mark, in hours")
    args = p.parse_args(argv)
    out = artifacts.output_file(args.out, "--out", args.force)
    curves = [load_curve(label, dirs) for label, dirs in args.run]
    plot_curves(curves, out, args.target, paper_generations=PAPER_GENERATIONS, hours_budget=args.hours)
    for c in curves:
        for why in c.not_drawn:
            print(f"{c.label}: {why}")
        best = int(np.argmax(c.held_out))
        hit = c.first_reaching(args.target) if args.target is not None else None
        reached = "" if args.target is None else (
            f"; target {args.target:g} not reached" if hit is None
            else f"; target {args.target:g} at generation {hit[0]} ({hit[1] / 3600:.2f} h)")
        print(f"{c.label}: best held-out {c.held_out[best]:.1f} at generation {int(c.generation[best])} "
              f"({c.seconds[best] / 3600:.2f} h) of {int(c.generation[-1])}{reached}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
