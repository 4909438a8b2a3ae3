"""Trained agents shipped with the package.

Each model is ``NAME.npz`` (a flat parameter file, :mod:`pinn_jax.artifacts`) beside ``NAME.json`` (the
training config, the generation count, which parameters were exported and how they were chosen).

    policy, params, cfg = pinn_jax.models.pretrained.load("cartpole_pi")

    python -m pinn_jax pretrained list
    python -m pinn_jax pretrained export RUN_DIR NAME [--params mean|best|eval_best] [--out DIR | --into-package]
    python -m pinn_jax pretrained export-student DISTILL_DIR NAME [--round N] [--out DIR | --into-package]
    python -m pinn_jax pretrained fetch-official      # the authors' weights, verified (pinn_jax.models.official)
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any, Sequence

import jax.numpy as jnp

from pinn_jax import artifacts, envs
from pinn_jax import config as config_lib
from pinn_jax.config import Config
from pinn_jax.errors import ArgumentParser, ConfigError, ModelError, cli, nonneg_int, one_line
from pinn_jax.experiment import setup
from pinn_jax.models import official
from pinn_jax.policies import Policy
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training.metrics import read_csv

HERE = artifacts.SHIPPED_DIR
available = artifacts.shipped_names


META_KEYS = ("config", "generations", "params", "num_params")  # what every NAME.json holds


def info(name: str) -> dict[str, Any]:
    """The metadata stored with a shipped model (config, generations, evaluation notes); a one-line
    :class:`ModelError` naming the file when it is not UTF-8 JSON, or not a mapping holding :data:`META_KEYS`."""
    path = artifacts.shipped_meta_file(name)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path} has no {', '.join(missing)} entry")
    if not isinstance(meta["config"], dict):
        raise ModelError(f"{path}: 'config' must be a mapping, got {type(meta['config']).__name__}")
    return meta


def checks(name: str) -> list[dict[str, Any]]:
    """The regression thresholds stored with a model (``check``: one mapping or a list of them)."""
    check = info(name).get("check", [])
    return check if isinstance(check, list) else [check]


def load(name: str) -> tuple[Policy, Any, Config]:
    """The policy, its parameter pytree and the config it was trained with."""
    cfg = _config(name, info(name))
    exp = setup(cfg)
    flat = artifacts.load_flat(artifacts.shipped_file(name), exp.num_params)
    return exp.policy, exp.unravel(jnp.asarray(flat)), cfg


def _config(name: str, meta: dict[str, Any]) -> Config:
    """A shipped model's training config, validated; a :class:`ModelError` naming its ``NAME.json`` otherwise."""
    try:
        return config_lib.from_dict(meta["config"])
    except ConfigError as e:
        raise ModelError(f"{artifacts.shipped_meta_file(name)}: {e}") from None


def _ship(dest: pathlib.Path, name: str, flat: Any, meta: dict[str, Any]) -> pathlib.Path:
    path, meta_path = artifacts.agent_files(dest, name)
    artifacts.save_flat(path, flat)
    artifacts.write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return path


def export(run_dir: str | pathlib.Path, name: str, which: str = "mean", notes: dict | None = None, *,
           dest: pathlib.Path) -> pathlib.Path:
    """Copy a run's parameters (``mean``/``best`` of ``params.npz`` or ``eval_best``) to ``dest`` (:data:`HERE`:
    into the package).

    ``notes`` are stored in the metadata; a ``check`` entry (``start``, ``shuffle``, optionally
    ``num_noise``, ``seed``, ``episodes``, ``min_mean``; or a list of them) is the regression threshold that
    ``tests/test_pretrained.py`` enforces.
    """
    run_dir = pathlib.Path(run_dir)
    cfg = ckpt.load_config(run_dir)
    flat, generation = artifacts.saved_params(run_dir, which)
    rows = read_csv(run_dir)
    if generation is None:  # params.npz: the run's last generation
        if not rows:
            raise ModelError(f"{run_dir} has no {artifacts.METRICS_FILE} rows to tell the generation of its "
                             f"{artifacts.PARAMS_FILE}")
        generation = int(rows[-1]["generation"])
    at = [r for r in rows if r["generation"] <= generation]
    meta = {"config": cfg.to_dict(), "generations": generation, "params": which, "num_params": int(flat.size),
            "train_wall_time_s": at[-1]["wall_time"] if at else None, **(notes or {})}
    return _ship(dest, name, flat, meta)


def export_student(distill_dir: str | pathlib.Path, name: str, round_: int | None = None,
                   notes: dict | None = None, *, dest: pathlib.Path) -> pathlib.Path:
    """Copy a ``pinn_jax.tools.distill`` student to ``dest`` (:data:`HERE`: into the package): round ``round_``
    (``rounds/NNN.npz``) or the last.

    The metadata records the student's config, the round and the distillation's wall time up to it.
    """
    distill_dir = pathlib.Path(distill_dir)
    log = distill_dir / artifacts.DISTILL_LOG
    for f in (artifacts.config_file(distill_dir), log):
        if not f.is_file():
            raise ModelError(f"{distill_dir} is not a distillation directory (no {f.name})")
    cfg = config_lib.load(artifacts.config_file(distill_dir))
    rows = read_csv(distill_dir, artifacts.DISTILL_LOG, columns=("wall_time",))
    if not rows:
        raise ModelError(f"{log} holds no rounds")
    if round_ is None:
        round_ = len(rows) - 1
    npz = artifacts.round_file(distill_dir, round_)
    if not 0 <= round_ < len(rows) or not npz.is_file():
        raise ModelError(f"{distill_dir} has no round {round_} (rounds 0 to {len(rows) - 1})")
    flat = artifacts.load_flat(npz)
    meta = {"config": cfg.to_dict(), "generations": 0, "params": f"distillation round {round_}",
            "num_params": int(flat.size), "distill_rounds": round_ + 1,
            "train_wall_time_s": float(rows[round_]["wall_time"]), **(notes or {})}
    return _ship(dest, name, flat, meta)


def held_out(name: str) -> tuple[float, float, int] | None:
    """``(mean, standard error, episodes)`` of the return a shipped model's metadata reports on episodes it was not
    chosen on (``evaluation``: unshuffled, else shuffled; ``[mean, std]``); None when it reports none."""
    ev = info(name).get("evaluation") or {}
    try:
        cell = ev.get("no_shuffle") or ev.get("shuffle")
        if not cell:
            return None
        (mean, std), episodes = [float(v) for v in cell], ev["episodes"]
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(episodes)
    except (AttributeError, TypeError, ValueError, KeyError):
        raise ModelError(f"{artifacts.shipped_meta_file(name)}: 'evaluation' must map no_shuffle or shuffle to "
                         f"[mean, std] over a whole number of episodes") from None
    return mean, std / max(episodes - 1, 1) ** 0.5, episodes


def describe(name: str) -> str:
    """One line about a shipped model: policy, parameter count, how it was made, its env, its held-out score
    (± s.e.) and its description."""
    m = info(name)
    made = m["params"] if "distill_rounds" in m else f"{m['generations']} generations, {m['params']} params"
    cfg, ev = _config(name, m), m.get("evaluation") or {}
    score = held_out(name)
    shown = ("no score recorded" if score is None else
             f"{score[0]:.1f} ± {score[1]:.1f} (s.e.) over {score[2]} episodes")
    return (f"{name}: {cfg.policy.name} ({m['num_params']} parameters), {made}; "
            f"{envs.label(cfg.env.name, ev.get('start', cfg.env.start), cfg.env.max_steps)}: {shown}; "
            f"{m.get('description', '')}").rstrip("; ")


@cli
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch-official"]:
        return official.main(argv[1:])
    p = ArgumentParser(prog="python -m pinn_jax pretrained", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="ship a finished run's parameters")
    e.add_argument("run_dir", help="the run directory")
    e.add_argument("name", help="name of the shipped model")
    e.add_argument("--params", choices=artifacts.PARAM_CHOICES, default="mean",
                   help="the final ES mean, the best member, or the mean that scored best on held-out episodes")
    d = sub.add_parser("export-student", help="ship a pinn_jax.tools.distill student")
    d.add_argument("distill_dir", help="the distillation's --out directory")
    d.add_argument("name", help="name of the shipped model")
    d.add_argument("--round", type=nonneg_int, default=None, help="the round to ship (default: the last)")
    for sp in (e, d):
        where = sp.add_mutually_exclusive_group()
        where.add_argument("--out", default=".", metavar="DIR", help="where to write NAME.npz and NAME.json")
        where.add_argument("--into-package", action="store_true",
                           help=f"write them into the installed package instead ({HERE}), to ship them")
        sp.add_argument("--force", action="store_true", help="replace an existing NAME.npz and NAME.json (else "
                        "they are refused before anything is read)")
    sub.add_parser("list", help="list shipped models")
    sub.add_parser("fetch-official", help="download and verify the authors' released weights")
    args = p.parse_args(argv)
    if args.cmd == "list":  # a broken model is named on stderr; the others are listed all the same
        for n in available():
            try:
                print(describe(n))
            except ModelError as e:
                print(f"warning: skipped {n}: {one_line(e)}", file=sys.stderr, flush=True)
        return 0
    if args.name in ("", "..") or pathlib.Path(args.name).name != args.name:
        raise ModelError(f"NAME must be a file name without a folder, got {args.name!r}")
    flag, dest = ("--into-package", HERE) if args.into_package else ("--out", artifacts.output_dir(args.out, "--out"))
    for path in artifacts.agent_files(dest, args.name):  # neither file replaced unless --force; both checked now
        artifacts.output_file(path, flag, args.force)
    if args.cmd == "export-student":
        print(export_student(args.distill_dir, args.name, args.round, dest=dest))
    else:
        print(export(args.run_dir, args.name, args.params, dest=dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
