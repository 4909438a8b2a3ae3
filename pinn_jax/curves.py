"""Learning curves of several runs: held-out return against generations and against wall-clock time.

``python -m pinn_jax.curves --run LABEL=RUN_DIR ... --out docs/es_alone/curves.png --target 472`` reads each
run's ``eval.csv`` (written by :mod:`pinn_jax.train` with ``train.eval_every``, or by
:mod:`pinn_jax.pycma_reference`) and draws both panels, with the target and the paper's budget marked.
A run given as ``LABEL=DIR1+DIR2`` is a staged run: the second stage's generations and seconds continue
after the first's. It prints, per run, the best held-out mean and the first generation and time that
reached the target.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pinn_jax import artifacts
from pinn_jax.plots import plot_curves
from pinn_jax.errors import ArgumentParser, UserError, cli
from pinn_jax.metrics import read_csv

PAPER_GENERATIONS = 14_000  # the paper's CMA-ES budget for the cart-pole attention neuron


@dataclass(frozen=True)
class Curve:
    label: str
    generation: np.ndarray
    seconds: np.ndarray
    held_out: np.ndarray
    stages: tuple[int, ...]  # generation at which each later stage starts

    def first_reaching(self, target: float) -> tuple[int, float] | None:
        """First (generation, seconds) whose held-out mean is >= target, or None."""
        hit = np.flatnonzero(self.held_out >= target)
        return None if hit.size == 0 else (int(self.generation[hit[0]]), float(self.seconds[hit[0]]))


def load_curve(label: str, dirs: Sequence[str | pathlib.Path]) -> Curve:
    """One curve from the ``eval.csv`` of one run directory or of several stages, one after the other."""
    gens, secs, vals, stages = [], [], [], []
    g0 = s0 = 0.0
    for d in dirs:
        rows = read_csv(d, "eval.csv")
        if not rows:
            raise UserError(f"--run {label}: {d} has no eval.csv rows (train with train.eval_every > 0)")
        if gens:
            stages.append(int(g0))
        gens += [g0 + r["generation"] for r in rows]
        secs += [s0 + r["wall_time"] for r in rows]
        vals += [r["return_mean"] for r in rows]
        g0, s0 = gens[-1], secs[-1]
    return Curve(label, np.array(gens), np.array(secs), np.array(vals), tuple(stages))


def _run_arg(text: str) -> tuple[str, list[str]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise argparse.ArgumentTypeError(f"expected LABEL=RUN_DIR[+RUN_DIR...], got {text!r}")
    return label, dirs.split("+")


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=_run_arg, action="append", required=True, metavar="LABEL=DIR[+DIR...]",
                   help="a run (or its stages, in order) to draw")
    p.add_argument("--out", required=True, help="figure file (png, pdf, svg)")
    p.add_argument("--target", type=float, default=None, help="held-out return to reach")
    p.add_argument("--hours", type=float, default=None, help="a wall-clock budget to mark, in hours")
    args = p.parse_args(argv)
    out = artifacts.output_file(args.out, "--out")
    curves = [load_curve(label, dirs) for label, dirs in args.run]
    plot_curves(curves, out, args.target, paper_generations=PAPER_GENERATIONS, hours_budget=args.hours)
    for c in curves:
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
