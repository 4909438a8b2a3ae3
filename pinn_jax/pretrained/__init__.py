"""Trained agents shipped with the package.

Each model is ``NAME.npz`` (flat float32 parameters, key ``params``) beside ``NAME.json`` (the training
config, the generation count, which parameters were exported and how they were chosen).

    policy, params, cfg = pinn_jax.pretrained.load("cartpole_pi")

Export a finished run with ``python -m pinn_jax.pretrained export RUN_DIR NAME [--params mean|best|eval_best]``
and a distilled student with ``python -m pinn_jax.pretrained export-student DISTILL_DIR NAME [--round N]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import jax
import numpy as np

from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.policies import Policy

HERE = pathlib.Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in HERE.glob("*.npz") if (HERE / f"{p.stem}.json").exists())


def info(name: str) -> dict[str, Any]:
    """The metadata stored with a shipped model (config, generations, evaluation notes)."""
    f = HERE / f"{name}.json"
    if not f.is_file():
        raise FileNotFoundError(f"no pretrained model {name!r} (available: {', '.join(available()) or 'none'})")
    return json.loads(f.read_text())


def checks(name: str) -> list[dict[str, Any]]:
    """The regression thresholds stored with a model (``check``: one mapping or a list of them)."""
    check = info(name).get("check", [])
    return check if isinstance(check, list) else [check]


def load(name: str) -> tuple[Policy, Any, Config]:
    """The policy, its parameter pytree and the config it was trained with."""
    from pinn_jax.rollout import flat_layout

    meta = info(name)
    cfg = config_lib.from_dict(meta["config"])
    policy, unravel, size = flat_layout(cfg)
    flat = np.load(HERE / f"{name}.npz")["params"]
    if flat.shape != (size,):
        raise ValueError(f"pretrained model {name!r} has {flat.size} parameters, its policy expects {size}")
    return policy, unravel(jax.numpy.asarray(flat, jax.numpy.float32)), cfg


def export(run_dir: str | pathlib.Path, name: str, which: str = "mean", notes: dict | None = None,
           dest: pathlib.Path = HERE) -> pathlib.Path:
    """Copy a run's parameters (``mean``/``best`` of ``params.npz`` or ``eval_best``) into the package.

    ``notes`` are stored in the metadata; a ``check`` entry (``start``, ``shuffle``, optionally
    ``num_noise``, ``seed``, ``episodes``, ``min_mean``; or a list of them) is the regression threshold that
    ``tests/test_pretrained.py`` enforces.
    """
    run_dir = pathlib.Path(run_dir)
    from pinn_jax.checkpoint import load_config, saved_params
    from pinn_jax.metrics import read_csv

    cfg = load_config(run_dir)
    flat, generation = saved_params(run_dir, which)
    rows = read_csv(run_dir)
    if generation is None:  # params.npz: the run's last generation
        generation = int(rows[-1]["generation"]) if rows else 0
    at = [r for r in rows if r["generation"] <= generation]
    meta = {"config": cfg.to_dict(), "generations": generation, "params": which, "num_params": int(flat.size),
            "train_wall_time_s": at[-1]["wall_time"] if at else None, **(notes or {})}
    np.savez(dest / f"{name}.npz", params=flat)
    (dest / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest / f"{name}.npz"


def export_student(distill_dir: str | pathlib.Path, name: str, round_: int | None = None,
                   notes: dict | None = None, dest: pathlib.Path = HERE) -> pathlib.Path:
    """Copy a ``pinn_jax.distill`` student into the package: round ``round_`` (``rounds/NNN.npz``) or the last.

    The metadata records the student's config, the round and the distillation's wall time up to it.
    """
    import csv

    from pinn_jax.distill import round_file

    distill_dir = pathlib.Path(distill_dir)
    for f in ("config.yaml", "distill.csv"):
        if not (distill_dir / f).is_file():
            raise FileNotFoundError(f"{distill_dir} is not a distillation directory (no {f})")
    cfg = config_lib.load(distill_dir / "config.yaml")
    with (distill_dir / "distill.csv").open() as f:
        rows = list(csv.DictReader(f))
    if round_ is None:
        round_ = len(rows) - 1
    npz = round_file(distill_dir, round_)
    if not 0 <= round_ < len(rows) or not npz.is_file():
        raise FileNotFoundError(f"{distill_dir} has no round {round_} (rounds 0 to {len(rows) - 1})")
    flat = np.load(npz)["params"]
    meta = {"config": cfg.to_dict(), "generations": 0, "params": f"distillation round {round_}",
            "num_params": int(flat.size), "distill_rounds": round_ + 1,
            "train_wall_time_s": float(rows[round_]["wall_time"]), **(notes or {})}
    np.savez(dest / f"{name}.npz", params=flat)
    (dest / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest / f"{name}.npz"


def main(argv: list[str] | None = None) -> int:
    from pinn_jax.checkpoint import PARAM_CHOICES

    p = argparse.ArgumentParser(prog="python -m pinn_jax.pretrained")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="ship a finished run's parameters")
    e.add_argument("run_dir")
    e.add_argument("name")
    e.add_argument("--params", choices=PARAM_CHOICES, default="mean",
                   help="the final ES mean, the best member, or the mean that scored best on held-out episodes")
    d = sub.add_parser("export-student", help="ship a pinn_jax.distill student")
    d.add_argument("distill_dir")
    d.add_argument("name")
    d.add_argument("--round", type=int, default=None, help="the round to ship (default: the last)")
    sub.add_parser("list", help="list shipped models")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for n in available():
            m = info(n)
            made = (f"{m['params']}" if "distill_rounds" in m else
                    f"{m['generations']} generations, {m['params']} params")
            print(f"{n}: {m['config']['policy']['name']} ({m['num_params']} parameters), {made}")
        return 0
    try:
        if args.cmd == "export-student":
            print(export_student(args.distill_dir, args.name, args.round))
        else:
            print(export(args.run_dir, args.name, args.params))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
