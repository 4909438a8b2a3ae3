"""Evaluate trained policies under shuffled and noisy observations (the paper's study).

    python -m pinn_jax evaluate official pretrained:cartpole_pi_catch --episodes 200 --out out/eval \\
        --shuffle-every 50 100 250 --noise 0 5 10 15 20 30 --video out/eval/pi.mp4 --attention out/eval/attn.png
    python -m pinn_jax evaluate runs/breakout_minatar_vision runs/breakout_minatar_mlp --max-steps 500 \\
        --shuffle-every 1 2 5 10 25 100 --noise 0 --occlude 0.1 0.3 0.5 0.8 --out out/pixels --video out/pixels/v.mp4

Every condition (:mod:`pinn_jax.study.conditions`) runs all its episodes in one compiled call per model
(``rollout.episode`` vmapped over episode keys). Episode ``i`` uses the key ``fold_in(PRNGKey(seed), i)``
in every condition and for every model, so comparisons are paired: the same starts, the same permutation
draws and the same noise. Models with a fixed input size (MLP, linear) are marked "n/a" in conditions
that change the number of features. The env, its start and the episode length are the first model's
unless ``--env``, ``--env-start`` or ``--max-steps`` say otherwise (with an ``--env`` of another task, the default start).
On an image env every model sees patches cut by its own ``env.patch_size``: a patch is a feature (shuffled, noise
patches added) and ``--occlude`` drops a fraction of them.

Models are loaded by :mod:`pinn_jax.models`; single episodes (videos, attention maps) are in
:mod:`pinn_jax.study.episodes`; the figures in :mod:`pinn_jax.study.plots`.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from pinn_jax import artifacts
from pinn_jax.config import STARTS, EnvConfig
from pinn_jax.envs import ObsTransform, label, same_task
from pinn_jax.errors import (
    ArgumentParser,
    EvaluationError,
    cli,
    float_range,
    nonneg_int,
    positive_float,
    positive_int,
    uint32,
)
from pinn_jax.models import Model, load_model, unique_names
from pinn_jax.policies import Policy
from pinn_jax.rollout import episode
from pinn_jax.study import plots, video
from pinn_jax.study.conditions import (
    DEFAULT_EPISODES,
    NOISE_COUNTS,
    SHUFFLE_PERIODS,
    Condition,
    condition_env,
    default_conditions,
    episode_keys,
    not_applicable,
    parse_condition,
)
from pinn_jax.study.episodes import (
    ATTENTION_KINDS,
    check_filmable,
    plot_attention,
    recording_bytes,
    render_episode_video,
    video_bytes,
)
from pinn_jax.study.plots import plot_noise, plot_occlusion, plot_returns, plot_shuffle_period
from pinn_jax.training import memory
from pinn_jax.training.progress import Tracker

__all__ = ["evaluate", "check_memory", "summarize", "report_rows", "save_report", "format_table", "write_plots", "main",
           "STAT_KEYS"]

STAT_KEYS = ("mean", "std", "sem", "median", "q25", "q75", "min", "max", "n_episodes")
NA = "n/a"


@functools.partial(jax.jit, static_argnames=("policy", "env", "num_steps"))
def _batch_returns(policy: Policy, env: Any, env_params: Any, params: Any, keys: jax.Array,
                   num_steps: int) -> tuple[jax.Array, jax.Array]:
    """All episodes of one model in one condition: ``episode`` vmapped over the keys."""
    out = jax.vmap(lambda k: episode(policy, env, env_params, params, k, num_steps))(keys)
    return out.ret, out.length


def summarize(returns: np.ndarray, lengths: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of per-episode returns (``std`` is the population std, ddof=0; ``sem`` the standard error
    of the mean, ddof=1)."""
    r = np.asarray(returns, np.float64)
    q25, med, q75 = np.percentile(r, [25, 50, 75])
    out = {"status": "ok", "reason": "", "mean": float(r.mean()), "std": float(r.std()),
           "sem": float(r.std(ddof=1) / np.sqrt(r.size)) if r.size > 1 else float("nan"), "median": float(med),
           "q25": float(q25), "q75": float(q75), "min": float(r.min()), "max": float(r.max()),
           "n_episodes": int(r.size)}
    if lengths is not None:
        out["mean_length"] = float(np.mean(lengths))
    return out


def _na_cell(reason: str) -> dict[str, Any]:
    return {"status": NA, "reason": reason, **{k: NA for k in STAT_KEYS}, "mean_length": NA}


def evaluate(models: Sequence[Model], conditions: Sequence[Condition] | None = None, episodes: int = DEFAULT_EPISODES,
             seed: int = 0, env_cfg: EnvConfig | None = None, log: Callable[[str], None] | None = None,
             tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate every model in every condition on the same ``episodes`` episode keys.

    Returns a report dict::

        {"meta": {seed, episodes, env, conditions, models},
         "results": {model: {condition: {status, reason, mean, std, median, q25, q75, min, max,
                                         n_episodes, mean_length}}},
         "returns": {model: {condition: [per-episode returns] or None}}}

    Cells of models that cannot take a condition's features are ``status: "n/a"`` with a reason
    and every statistic ``"n/a"``. ``env_cfg`` defaults to the hard start, 1000 steps. ``log`` gets a line
    per cell, ``tick`` is called once per cell done (a progress bar).
    """
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    models = list(models)
    conditions = list(default_conditions() if conditions is None else conditions)
    if len({c.name for c in conditions}) != len(conditions):
        raise EvaluationError(f"condition names must be unique: {[c.name for c in conditions]}")
    env_cfg = env_cfg or EnvConfig()
    say = log or (lambda _msg: None)
    done = tick or (lambda _msg: None)
    names = unique_names(models)
    keys = episode_keys(seed, episodes)
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    returns: dict[str, dict[str, Any]] = {n: {} for n in names}
    for cond in conditions:
        for name, model in zip(names, models):
            reason = not_applicable(model, env_cfg, cond)
            if reason is not None:
                say(f"note: {name} ({model.kind}) cannot run {cond.name}: {reason} -> n/a")
                results[name][cond.name] = _na_cell(reason)
                returns[name][cond.name] = None
                done(f"{cond.name} {name}")
                continue
            env, env_params = condition_env(env_cfg, cond, model)
            t0 = time.perf_counter()
            ret, length = jax.device_get(_batch_returns(model.policy, env, env_params, model.params, keys,
                                                        env_cfg.max_steps))
            cell = summarize(ret, length)
            results[name][cond.name] = cell
            returns[name][cond.name] = [float(x) for x in np.asarray(ret)]
            say(f"{cond.name:>22s}  {name}: {cell['mean']:8.1f} ± {cell['sem']:6.1f} (s.e.)  "
                f"({episodes} episodes, {time.perf_counter() - t0:.1f}s)")
            done(f"{cond.name} {name}")
    meta = {
        "seed": int(seed), "episodes": int(episodes),
        "env": {"name": env_cfg.name, "start": env_cfg.start, "max_steps": env_cfg.max_steps},
        "conditions": [c.as_dict() for c in conditions],
        "models": [{"name": n, "kind": m.kind, "source": m.source, "input_size": m.input_size,
                    "patch_size": m.env_cfg.patch_size} for n, m in zip(names, models)],
        "keys": f"episode i uses fold_in(PRNGKey({seed}), i), shared by all models and conditions",
    }
    return {"meta": meta, "results": results, "returns": returns}


def check_memory(models: Sequence[Model], conditions: Sequence[Condition], episodes: int,
                 env_cfg: EnvConfig | None = None) -> None:
    """Refuse, in one line naming ``--episodes`` and the condition, an evaluation whose episodes cannot all be held
    in memory at once (:func:`evaluate` runs a model's episodes of a condition in one call): checked for every model
    (on ``env_cfg``, else its own env) in every condition it can run, before anything runs."""
    per, name, cond = 0, "", None
    for model in models:
        cfg = env_cfg or model.env_cfg
        for c in conditions:
            if not_applicable(model, cfg, c) is None:
                n = memory.episode_bytes(model.policy, *condition_env(cfg, c, model), model.params)
                per, name, cond = max((per, name, cond), (n, model.name, c), key=lambda w: w[0])
    if cond is not None:
        memory.require(episodes * per, f"--episodes {episodes} of {name} in {cond.name} ({memory.size(per)} an "
                                       f"episode)", EvaluationError)


# --------------------------------------------------------------------------------------- reporting
CSV_FIELDS = ("model", "condition", "status", "reason", *STAT_KEYS, "mean_length",
              "shuffle", "shuffle_every", "num_noise", "occlude")


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (model, condition), in condition order."""
    conds = {c["name"]: c for c in report["meta"]["conditions"]}
    rows = []
    for model, cells in report["results"].items():
        for cname, cell in cells.items():
            c = conds[cname]
            rows.append({"model": model, "condition": cname, **cell, "shuffle": c["shuffle"],
                         "shuffle_every": c["shuffle_every"], "num_noise": c["num_noise"], "occlude": c["occlude"]})
    return rows


def save_report(report: dict[str, Any], out_dir: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``report.json`` (everything, with per-episode returns) and ``report.csv`` (statistics)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, cpath = out / artifacts.REPORT_JSON, out / artifacts.REPORT_CSV
    artifacts.write_text(jpath, json.dumps(report, indent=1))
    with artifacts.atomic(cpath) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(report_rows(report))
    return jpath, cpath


def format_table(report: dict[str, Any]) -> str:
    """Compact text table: one row per condition, one ``mean ± s.e.`` column per model, each named in full."""
    models = list(report["results"])
    conds = [c["name"] for c in report["meta"]["conditions"]]
    cells: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    for c in conds:
        cells[c] = []
        for m in models:
            cell = report["results"][m][c]
            if cell["status"] == "ok":
                cells[c].append(f"{cell['mean']:.1f}" + (f" ± {cell['sem']:.1f}" if np.isfinite(cell["sem"]) else ""))
            else:
                cells[c].append(NA)
                notes.setdefault(f"{m}: {cell['reason'].split(' (')[0]}", []).append(c)
    widths = [max([len(m)] + [len(cells[c][j]) for c in conds]) for j, m in enumerate(models)]
    cw = max([len("condition")] + [len(c) for c in conds])
    head = f"{'condition':<{cw}} | " + " | ".join(f"{m:>{w}}" for m, w in zip(models, widths))
    lines = [head, "-" * len(head)]
    lines += [f"{c:<{cw}} | " + " | ".join(f"{s:>{w}}" for s, w in zip(cells[c], widths)) for c in conds]
    meta = report["meta"]
    env = meta["env"]
    lines.append(f"mean ± s.e. (standard error of the mean) of the return over {meta['episodes']} episodes per cell "
                 f"({label(env['name'], env['start'], env['max_steps'])}, seed {meta['seed']})")
    for note, cs in notes.items():
        lines.append(f"n/a  {note} ({', '.join(cs)})")
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out_dir: str | os.PathLike,
                log: Callable[[str], None] | None = None) -> list[pathlib.Path]:
    """The four study figures that the report's conditions support, as PNGs in ``out_dir``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _msg: None)
    paths = [plot_returns(report, out / artifacts.RETURNS_BOX_PNG)]
    if plots.noise_conditions(report):
        paths.append(plot_noise(report, out / artifacts.RETURNS_VS_NOISE_PNG))
    else:
        say(f"no shuffled noise conditions: skipping {artifacts.RETURNS_VS_NOISE_PNG}")
    if len(plots.period_conditions(report)) >= 2:
        paths.append(plot_shuffle_period(report, out / artifacts.RETURNS_VS_PERIOD_PNG))
    else:
        say(f"fewer than two shuffle settings without noise: skipping {artifacts.RETURNS_VS_PERIOD_PNG}")
    if plots.occlusion_conditions(report):
        paths.append(plot_occlusion(report, out / artifacts.RETURNS_VS_OCCLUSION_PNG))
    return paths


# -------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None):
    p = ArgumentParser(prog="python -m pinn_jax evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="run directory, RUN_DIR/checkpoints/<gen>, FILE.npz, 'official' or 'pretrained:NAME'")
    p.add_argument("--params", choices=artifacts.PARAM_CHOICES, default="mean",
                   help="parameters of a run: the ES mean, the best member, or eval_best (the mean that scored "
                        "best on held-out episodes during training)")
    p.add_argument("--episodes", type=positive_int, default=DEFAULT_EPISODES, help="episodes per condition")
    p.add_argument("--seed", type=uint32, default=0, help="seed of the episode keys")
    p.add_argument("--env", default=None, help="environment name (default: the first model's)")
    p.add_argument("--env-start", choices=STARTS, default=None, help="start distribution (default: the "
                   "first model's)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="episode length limit (default: the first model's)")
    p.add_argument("--shuffle-every", type=positive_int, nargs="*", default=list(SHUFFLE_PERIODS), metavar="K",
                   help="shuffle periods in steps, one condition each")
    p.add_argument("--noise", type=nonneg_int, nargs="*", default=list(NOISE_COUNTS), metavar="N",
                   help="noise feature counts, shuffled once per episode")
    p.add_argument("--noise-std", type=positive_float, default=ObsTransform.noise_std,
                   help="std of the noise features")
    p.add_argument("--occlude", type=float_range(0.0, 1.0), nargs="*", default=[], metavar="F",
                   help="image envs: fractions of the patches dropped (a random set per episode, the rest shuffled "
                        "once), one condition occlude_F each")
    p.add_argument("--out", default=None, metavar="DIR", help="write report.json, report.csv and plots here")
    p.add_argument("--video", default=None, metavar="FILE", help="render one episode to FILE.mp4 or FILE.gif")
    p.add_argument("--video-condition", default="shuffle", metavar="NAME", help="condition of the video episode")
    p.add_argument("--video-model", default=None, metavar="MODEL", help="which model to film (default: the first)")
    p.add_argument("--video-steps", type=positive_int, default=None,
                   help="steps rendered (default: the whole episode)")
    p.add_argument("--video-stride", type=positive_int, default=1, help="render every k-th step")
    p.add_argument("--video-size", default="480x320", metavar="WxH", help="frame size")
    p.add_argument("--fps", type=positive_float, default=30.0, help="video frame rate")
    p.add_argument("--episode-index", type=nonneg_int, default=None, metavar="I",
                   help="which evaluated episode the video and attention figure show (default: the one with the "
                        "median return of its model in its condition)")
    p.add_argument("--attention", default=None, metavar="FILE.png",
                   help="attention heatmap of one episode (a vision model's: over the frame)")
    p.add_argument("--attention-condition", default="shuffle", metavar="NAME",
                   help="condition of the attention episode")
    p.add_argument("--attention-model", default=None, metavar="MODEL",
                   help="which model (default: the first attention model)")
    p.add_argument("--force", action="store_true", help="replace the reports in --out, the --video and the "
                   "--attention file when they exist (else they are refused before anything runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every 30 s instead")
    return p.parse_args(argv)


def _pick(models: list[Model], names: list[str], spec: str | None, flag: str, need_attention: bool = False) -> Model:
    if spec is None:
        pool = [m for m in models if m.kind in ATTENTION_KINDS] if need_attention else models
        if not pool:
            raise EvaluationError(f"{flag} needs an attention-neuron model, but none of the models is one "
                                  f"({', '.join(f'{n}: {m.kind}' for n, m in zip(names, models))})")
        return pool[0]
    for n, m in zip(names, models):
        if spec == n:
            if need_attention and m.kind not in ATTENTION_KINDS:
                raise EvaluationError(f"{flag} needs an attention-neuron model; {m.name} is a {m.kind} policy")
            return m
    raise EvaluationError(f"{flag} {spec!r} is not one of the models: {', '.join(names)}")


def representative_episode(returns: Sequence[float]) -> int:
    """The index of the episode whose return is the median (the lower middle one for an even count)."""
    order = np.argsort(np.asarray(returns), kind="stable")
    return int(order[(len(order) - 1) // 2])


def _episode_for(model: Model, name: str, cond: Condition, report: dict[str, Any], args, env_cfg: EnvConfig,
                 say: Callable[[str], None]) -> int:
    if args.episode_index is not None:
        return args.episode_index
    returns = report["returns"].get(name, {}).get(cond.name)
    if returns is None:  # the condition was not part of the study: run it for this model alone
        returns = evaluate([model], [cond], args.episodes, args.seed, env_cfg)["returns"][model.name][cond.name]
    i = representative_episode(returns)
    say(f"{name}, {cond.name}: showing episode {i}, return {returns[i]:.1f}, the median of {len(returns)}")
    return i


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on a bad model spec or option, with a one-line error)."""
    args = parse_args(argv)
    info = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.episode_index is not None and args.episode_index >= args.episodes:
        raise EvaluationError(f"--episode-index {args.episode_index} is not one of the {args.episodes} episodes "
                              f"evaluated (0 to {args.episodes - 1})")
    conditions = default_conditions(args.shuffle_every, args.noise, args.noise_std, args.occlude)
    video_cond = parse_condition(args.video_condition, args.noise_std) if args.video else None
    attn_cond = parse_condition(args.attention_condition, args.noise_std) if args.attention else None
    size = re.fullmatch(r"(\d+)x(\d+)", args.video_size)
    if not size or min(int(size[1]), int(size[2])) < 16:
        raise EvaluationError(f"--video-size must look like 480x320 (each >= 16), got {args.video_size!r}")
    # Every output is checked (and its folder created) before the (long) evaluation.
    if args.out:
        artifacts.output_dir(args.out, "--out", artifacts.EVALUATE_FILES, args.force)
    if args.video:
        try:
            video.video_format(args.video)
        except ValueError as e:
            raise EvaluationError(str(e)) from None
        artifacts.output_file(args.video, "--video", args.force)
    if args.attention:
        artifacts.output_file(args.attention, "--attention", args.force)

    models = [load_model(spec, args.params) for spec in args.models]
    names = unique_names(models)
    first = models[0].env_cfg
    name = args.env or first.name
    start = args.env_start or (first.start if same_task(name, first.name) else EnvConfig.start)
    env_cfg = EnvConfig(name=name, start=start, max_steps=args.max_steps or first.max_steps)
    probe = next((m for m in models if same_task(m.env_cfg.name, env_cfg.name)), None)
    for cond in conditions:  # a bad --env or an --occlude of feature vectors is one line before anything runs
        condition_env(env_cfg, cond, probe)
    video_model = _pick(models, names, args.video_model, "--video-model") if args.video else None
    attn_model = _pick(models, names, args.attention_model, "--attention", True) if args.attention else None
    if video_model is not None:
        check_filmable(env_cfg, video_model)
        reason = not_applicable(video_model, env_cfg, video_cond)
        if reason:
            raise EvaluationError(f"cannot film {video_model.name} in {video_cond.name}: {reason}")
        video_need = video_bytes(video_model, video_cond, env_cfg, args.video_steps, args.video_stride, int(size[1]),
                                 int(size[2]))
        memory.require(video_need, f"--video-size {args.video_size} (a video of {video_model.name}, up to "
                                   f"{args.video_steps or env_cfg.max_steps} steps, every {args.video_stride})",
                       EvaluationError)
    if attn_model is not None:
        memory.require(recording_bytes(attn_model, attn_cond, env_cfg), f"--attention (an episode of "
                       f"{env_cfg.max_steps} steps recorded)", EvaluationError)
    check_memory(models, conditions, args.episodes, env_cfg)

    for n, m in zip(names, models):
        info(f"model {n}: {m.kind} policy from {m.source}")
    info(f"evaluating {len(models)} model(s) × {len(conditions)} conditions × {args.episodes} episodes "
         f"on {label(env_cfg.name, env_cfg.start, env_cfg.max_steps)}")
    with Tracker(len(models) * len(conditions), "evaluate", bar=not args.no_progress) as bar:
        report = evaluate(models, conditions, args.episodes, args.seed, env_cfg, log=bar.log,
                          tick=lambda cell: bar.advance(1, cell))
    print(format_table(report))
    if args.out:
        jpath, cpath = save_report(report, args.out)
        for p in (jpath, cpath, *write_plots(report, args.out, log=info)):
            print(f"wrote {p}")
    if video_model is not None:
        i = _episode_for(video_model, names[models.index(video_model)], video_cond, report, args, env_cfg, info)
        p = render_episode_video(video_model, args.video, video_cond, env_cfg, args.seed, i, args.video_steps,
                                 args.video_stride, int(size[1]), int(size[2]), args.fps)
        print(f"wrote {p} (" + ("the whole episode" if args.video_steps is None else
                                f"its first {args.video_steps} steps at most") + ")")
    if attn_model is not None:
        i = _episode_for(attn_model, names[models.index(attn_model)], attn_cond, report, args, env_cfg, info)
        p = plot_attention(attn_model, args.attention, attn_cond, env_cfg, args.seed, i)
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
