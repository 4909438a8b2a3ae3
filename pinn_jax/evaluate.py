"""Evaluate trained policies under shuffled and noisy observations (the paper's study).

    python -m pinn_jax.evaluate official runs/pi runs/mlp --episodes 200 --out out/eval \\
        --shuffle-every 50 100 250 --noise 0 5 10 15 20 30 --video out/eval/pi.mp4 --attention out/eval/attn.png

Every condition runs all its episodes in one compiled call per model (``rollout.episode`` vmapped
over episode keys). Episode ``i`` uses the key ``fold_in(PRNGKey(seed), i)`` in every condition
and for every model, so comparisons are paired: the same starts, the same permutation draws and
the same noise. Models with a fixed input size (MLP, linear) are marked "n/a" in conditions that
change the number of features.

Public API (for notebooks): :func:`load_model`, :class:`Model`, :class:`Condition`,
:func:`default_conditions`, :func:`parse_condition`, :func:`evaluate`, :func:`save_report`,
:func:`format_table`, :func:`write_plots` (and the figures in :mod:`pinn_jax.plots`),
:func:`record_episode`, :func:`render_episode_video`, :func:`plot_attention`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import importlib
import json
import os
import pathlib
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax import checkpoint as ckpt
from pinn_jax import plots
from pinn_jax.config import Config, ConfigError, EnvConfig
from pinn_jax import config as config_lib
from pinn_jax.envs import ObsTransform, render
from pinn_jax.plots import plot_noise, plot_returns, plot_shuffle_period
from pinn_jax.policies import AttentionNeuronPolicy, MLPPolicy, Policy, load_official, official_weights_path
from pinn_jax.rollout import build_env, episode, flat_layout, obs_dim_of

__all__ = [
    "EvaluationError", "ModelError", "Model", "load_model", "Condition", "default_conditions", "parse_condition",
    "episode_keys", "input_size", "not_applicable", "evaluate", "summarize", "report_rows",
    "save_report", "format_table", "write_plots", "plot_returns", "plot_noise", "plot_shuffle_period",
    "Recording", "record_episode", "render_episode_video", "plot_attention", "main",
]

STAT_KEYS = ("mean", "std", "median", "q25", "q75", "min", "max", "n_episodes")
NA = "n/a"


class EvaluationError(ValueError):
    """A bad model spec, condition or option (one-line message; exit code 2 from the CLI)."""


class ModelError(EvaluationError):
    """A model spec that cannot be loaded (one-line message naming the spec or path)."""


# ------------------------------------------------------------------------------------------ models
@dataclass(frozen=True, eq=False)
class Model:
    """A policy with its parameters and the environment config it was trained on."""

    name: str
    policy: Policy
    params: Any
    env_cfg: EnvConfig = field(default_factory=EnvConfig)
    source: str = ""  # where it came from (path, file), for reports
    config: Config | None = None  # the full training config when loaded from a run

    @property
    def kind(self) -> str:
        """``attention_neuron``, ``mlp``, ``linear`` or the policy's class name."""
        if isinstance(self.policy, AttentionNeuronPolicy):
            return "attention_neuron"
        if isinstance(self.policy, MLPPolicy):
            return "mlp" if self.policy.hidden else "linear"
        return type(self.policy).__name__


def input_size(model: Model) -> int | None:
    """The fixed number of observation features a model takes, or None if it takes any number."""
    if isinstance(model.policy, AttentionNeuronPolicy):
        return None
    if isinstance(model.policy, MLPPolicy):
        return MLPPolicy.expected_obs_dim(model.params)
    return getattr(model.policy, "obs_dim", None)


def load_model(spec: str, params: str = "mean", name: str | None = None) -> Model:
    """Load a model from a spec.

    * ``RUN_DIR`` or ``RUN_DIR/checkpoints/<gen>``: the run's config and restored state (the
      latest checkpoint for a run directory); ``params`` picks the search distribution's
      ``"mean"`` (default), the ``"best"`` member seen, or ``"eval_best"``, the mean that scored
      best on the held-out episodes during training (``eval_best.npz``).
    * ``official``: the attention-neuron policy with the authors' released weights
      (``$PINN_JAX_REFERENCE_DIR/attentionneuron_cartpole/model.npz`` or
      ``<repo>/../shared/reference/...``).
    * ``pretrained:NAME``: ``pinn_jax.pretrained.load(NAME)``.
    * ``FILE.npz``: flat parameters (key ``params``) with the ``config.yaml`` of its directory or the one
      above, e.g. a distilled student ``OUT/student.npz`` or ``OUT/rounds/NNN.npz``.

    Raises :class:`ModelError` with a one-line message.
    """
    if params not in ckpt.PARAM_CHOICES:
        raise ModelError(f"params must be one of {', '.join(ckpt.PARAM_CHOICES)}, got {params!r}")
    spec = str(spec)
    if spec == "official":
        return _load_official(name or spec)
    if spec.startswith("pretrained:"):
        return _load_pretrained(spec, name or spec)
    if spec.endswith(".npz"):
        return _load_flat(spec, name or spec)
    try:
        return _load_run(spec, params, name or spec)
    except (ckpt.CheckpointError, ConfigError) as e:
        raise ModelError(_one_line(e)) from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_official(name: str) -> Model:
    policy = AttentionNeuronPolicy()
    path = official_weights_path()
    try:
        params = load_official(path, policy=policy)
    except FileNotFoundError:
        raise ModelError(f"official weights not found: {path} (set $PINN_JAX_REFERENCE_DIR to the "
                         f"directory holding attentionneuron_cartpole/model.npz)") from None
    except ValueError as e:
        raise ModelError(f"official weights unreadable: {_one_line(e)}") from None
    return Model(name=name, policy=policy, params=params, env_cfg=EnvConfig(), source=str(path))


def _load_pretrained(spec: str, name: str) -> Model:
    key = spec.split(":", 1)[1].strip()
    if not key:
        raise ModelError(f"{spec!r}: give a name after 'pretrained:', e.g. pretrained:cartpole_pi")
    try:
        mod = importlib.import_module("pinn_jax.pretrained")
    except ModuleNotFoundError as e:
        if e.name != "pinn_jax.pretrained":
            raise
        raise ModelError(f"cannot load {spec!r}: pretrained models are not available "
                         f"(module pinn_jax.pretrained is missing in this install)") from None
    try:
        policy, model_params, cfg = mod.load(key)
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ModelError(f"cannot load {spec!r}: {_one_line(e)}") from None
    full = None
    if isinstance(cfg, Config):
        full, env_cfg = cfg, cfg.env
    elif isinstance(cfg, EnvConfig):
        env_cfg = cfg
    elif isinstance(cfg, dict):
        full = config_lib.from_dict(cfg)
        env_cfg = full.env
    else:
        env_cfg = EnvConfig()
    return Model(name=name, policy=policy, params=model_params, env_cfg=env_cfg, source=spec, config=full)


def _load_flat(spec: str, name: str) -> Model:
    path = pathlib.Path(spec)
    if not path.is_file():
        raise ModelError(f"parameter file not found: {spec}")
    cfg_path = next((d / "config.yaml" for d in (path.parent, path.parent.parent) if (d / "config.yaml").is_file()),
                    None)
    if cfg_path is None:
        raise ModelError(f"{spec}: no config.yaml beside it or one directory up to say which policy it holds")
    try:
        cfg = config_lib.load(cfg_path)
        with np.load(path) as data:
            flat = np.asarray(data["params"], np.float32)
    except (ConfigError, KeyError, ValueError, OSError) as e:
        raise ModelError(f"cannot load {spec}: {_one_line(e)}") from None
    policy, unravel, size = flat_layout(cfg)
    if flat.shape != (size,):
        raise ModelError(f"{spec} holds {flat.size} parameters, the policy of {cfg_path} has {size}")
    return Model(name=name, policy=policy, params=unravel(jnp.asarray(flat)), env_cfg=cfg.env, source=spec,
                 config=cfg)


def _load_run(spec: str, which: str, name: str) -> Model:
    from pinn_jax.trainer import make_trainer  # the ES machinery is only needed for run directories

    run_dir, step = ckpt.resolve(spec)
    cfg = ckpt.load_config(run_dir)
    tr = make_trainer(cfg)
    state = tr.init()
    npz = pathlib.Path(run_dir) / "params.npz"
    has_ckpt = (pathlib.Path(run_dir) / "checkpoints").is_dir()
    if which == "eval_best" or (step is None and not has_ckpt and npz.is_file()):  # parameters saved as files
        if step is not None:
            raise ModelError(f"{spec}: eval_best parameters belong to the run directory, not to a checkpoint")
        flat, generation = ckpt.saved_params(run_dir, which)
        model_params = tr.unravel(jnp.asarray(flat))
        source = f"{run_dir} ({which}" + (f", generation {generation})" if generation is not None else ")")
    else:
        state, _ = ckpt.restore(run_dir, state, step)
        model_params = tr.mean_params(state) if which == "mean" else tr.best_params(state)
        source = f"{run_dir} (generation {int(state.generation)}, {which})"
    return Model(name=name, policy=tr.policy, params=model_params, env_cfg=cfg.env, source=source, config=cfg)


# -------------------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Condition:
    """An observation condition: permutation (none / once per episode / every k steps) and noise."""

    name: str
    shuffle: bool = False
    shuffle_every: int = 0  # re-draw the permutation every k steps (0: only at reset)
    num_noise: int = 0  # Gaussian noise features appended (before shuffling)
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        if self.shuffle_every < 0 or self.num_noise < 0:
            raise EvaluationError(f"condition {self.name!r}: shuffle_every and num_noise must be >= 0")
        if self.shuffle_every and not self.shuffle:
            raise EvaluationError(f"condition {self.name!r}: shuffle_every needs shuffle=True")

    @property
    def transform(self) -> ObsTransform:
        return ObsTransform(shuffle=self.shuffle, shuffle_every=self.shuffle_every,
                            num_noise=self.num_noise, noise_std=self.noise_std)

    @property
    def label(self) -> str:
        """Human-readable description for plots and tables."""
        if not self.shuffle:
            base = "no shuffle"
        elif self.shuffle_every:
            base = f"shuffle every {self.shuffle_every} steps"
        else:
            base = "shuffle once per episode"
        return base + (f" + {self.num_noise} noise features" if self.num_noise else "")


def _condition_name(shuffle: bool, shuffle_every: int, num_noise: int) -> str:
    if num_noise:
        name = f"noise_{num_noise}"
        if shuffle_every:
            name += f"_every_{shuffle_every}"
        return name if shuffle else name + "_no_shuffle"
    if not shuffle:
        return "no_shuffle"
    return f"shuffle_every_{shuffle_every}" if shuffle_every else "shuffle"


def make_condition(shuffle: bool = False, shuffle_every: int = 0, num_noise: int = 0,
                   noise_std: float = 0.1) -> Condition:
    """A condition with its canonical name (``no_shuffle``, ``shuffle``, ``shuffle_every_K``, ``noise_N``)."""
    shuffle = bool(shuffle or shuffle_every)
    return Condition(_condition_name(shuffle, shuffle_every, num_noise), shuffle, int(shuffle_every),
                     int(num_noise), float(noise_std))


_NAME_RE = re.compile(r"^(?:(no_shuffle)|(shuffle)|shuffle_every_(\d+)|noise_(\d+)(?:_every_(\d+))?(_no_shuffle)?)$")


def parse_condition(name: str, noise_std: float = 0.1) -> Condition:
    """Condition from its name: ``no_shuffle``, ``shuffle`` (once per episode), ``shuffle_every_K``,
    ``noise_N`` (N noise features, shuffled once), ``noise_N_every_K``, ``noise_N_no_shuffle``."""
    m = _NAME_RE.match(str(name).strip())
    if not m:
        raise EvaluationError(f"unknown condition {name!r}: use no_shuffle, shuffle, shuffle_every_K, noise_N, "
                         f"noise_N_every_K or noise_N_no_shuffle")
    no_shuf, shuf, every, noise, noise_every, noise_plain = m.groups()
    if no_shuf:
        return make_condition(noise_std=noise_std)
    if shuf:
        return make_condition(True, noise_std=noise_std)
    if every:
        if int(every) < 1:
            raise EvaluationError(f"condition {name!r}: the shuffle period must be >= 1")
        return make_condition(True, int(every), noise_std=noise_std)
    k = int(noise_every or 0)
    if noise_every and (k < 1 or noise_plain):
        raise EvaluationError(f"condition {name!r}: a shuffle period needs shuffling and must be >= 1")
    return make_condition(not noise_plain, k, int(noise), noise_std)


def default_conditions(shuffle_every: Sequence[int] = (50, 100, 250),
                       noise: Sequence[int] = (0, 5, 10, 15, 20, 30),
                       noise_std: float = 0.1) -> list[Condition]:
    """The study: no shuffle, shuffle once per episode, shuffle every k steps (each ``shuffle_every``)
    and, for each ``noise`` count N > 0, N noise features appended with the features shuffled once
    per episode (N = 0 of that series is the ``shuffle`` condition)."""
    if any(int(k) < 1 for k in shuffle_every):
        raise EvaluationError(f"shuffle periods must be >= 1, got {list(shuffle_every)}")
    if any(int(n) < 0 for n in noise):
        raise EvaluationError(f"noise feature counts must be >= 0, got {list(noise)}")
    conds = [make_condition(noise_std=noise_std), make_condition(True, noise_std=noise_std)]
    conds += [make_condition(True, int(k), noise_std=noise_std) for k in dict.fromkeys(shuffle_every)]
    conds += [make_condition(True, 0, int(n), noise_std) for n in dict.fromkeys(noise) if int(n) > 0]
    return conds


# --------------------------------------------------------------------------------------- rollouts
def episode_keys(seed: int, episodes: int) -> jax.Array:
    """Episode ``i``'s key is ``fold_in(PRNGKey(seed), i)`` (independent of how many are run)."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(episodes))


@functools.lru_cache(maxsize=128)
def condition_env(env_cfg: EnvConfig, condition: Condition) -> tuple[Any, Any]:
    """The wrapped env and its params for a condition (cached, so compiled rollouts are reused)."""
    return build_env(env_cfg, condition.transform)


@functools.partial(jax.jit, static_argnames=("policy", "env", "num_steps"))
def _batch_returns(policy: Policy, env: Any, env_params: Any, params: Any, keys: jax.Array,
                   num_steps: int) -> tuple[jax.Array, jax.Array]:
    """All episodes of one model in one condition: ``episode`` vmapped over the keys."""
    out = jax.vmap(lambda k: episode(policy, env, env_params, params, k, num_steps))(keys)
    return out.ret, out.length


@functools.partial(jax.jit, static_argnames=("policy", "env", "num_steps"))
def _record(policy: Policy, env: Any, env_params: Any, params: Any, key: jax.Array, num_steps: int):
    return episode(policy, env, env_params, params, key, num_steps, record=True)


def _env_family(name: str) -> str:
    return "CartPoleSwingUp" if name.startswith("CartPoleSwingUp") else name


def not_applicable(model: Model, env_cfg: EnvConfig, condition: Condition) -> str | None:
    """Why ``model`` cannot run in ``condition`` (checked up front), or None if it can."""
    if _env_family(model.env_cfg.name) != _env_family(env_cfg.name):
        return f"trained on {model.env_cfg.name}, not {env_cfg.name}"
    fixed = input_size(model)
    if fixed is not None:
        env, env_params = condition_env(env_cfg, condition)
        n = obs_dim_of(env, env_params)
        if n != fixed:
            return f"fixed input size {fixed} (condition gives {n} features)"
    return None


def summarize(returns: np.ndarray, lengths: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of per-episode returns (``std`` is the population std, ddof=0)."""
    r = np.asarray(returns, np.float64)
    q25, med, q75 = np.percentile(r, [25, 50, 75])
    out = {"status": "ok", "reason": "", "mean": float(r.mean()), "std": float(r.std()), "median": float(med),
           "q25": float(q25), "q75": float(q75), "min": float(r.min()), "max": float(r.max()),
           "n_episodes": int(r.size)}
    if lengths is not None:
        out["mean_length"] = float(np.mean(lengths))
    return out


def _na_cell(reason: str) -> dict[str, Any]:
    return {"status": NA, "reason": reason, **{k: NA for k in STAT_KEYS}, "mean_length": NA}


def _unique_names(models: Sequence[Model]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        names.append(m.name if seen[m.name] == 1 else f"{m.name}#{seen[m.name]}")
    return names


def evaluate(models: Sequence[Model], conditions: Sequence[Condition] | None = None, episodes: int = 200,
             seed: int = 0, env_cfg: EnvConfig | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate every model in every condition on the same ``episodes`` episode keys.

    Returns a report dict::

        {"meta": {seed, episodes, env, conditions, models},
         "results": {model: {condition: {status, reason, mean, std, median, q25, q75, min, max,
                                         n_episodes, mean_length}}},
         "returns": {model: {condition: [per-episode returns] or None}}}

    Cells of models that cannot take a condition's features are ``status: "n/a"`` with a reason
    and every statistic ``"n/a"``. ``env_cfg`` defaults to the hard start, 1000 steps.
    """
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    models = list(models)
    conditions = list(default_conditions() if conditions is None else conditions)
    if len({c.name for c in conditions}) != len(conditions):
        raise EvaluationError(f"condition names must be unique: {[c.name for c in conditions]}")
    env_cfg = env_cfg or EnvConfig()
    say = log or (lambda _msg: None)
    names = _unique_names(models)
    keys = episode_keys(seed, episodes)
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    returns: dict[str, dict[str, Any]] = {n: {} for n in names}
    for cond in conditions:
        env, env_params = condition_env(env_cfg, cond)
        for name, model in zip(names, models):
            reason = not_applicable(model, env_cfg, cond)
            if reason is not None:
                say(f"note: {name} ({model.kind}) cannot run {cond.name}: {reason} -> n/a")
                results[name][cond.name] = _na_cell(reason)
                returns[name][cond.name] = None
                continue
            t0 = time.perf_counter()
            ret, length = jax.device_get(_batch_returns(model.policy, env, env_params, model.params, keys,
                                                        env_cfg.max_steps))
            cell = summarize(ret, length)
            results[name][cond.name] = cell
            returns[name][cond.name] = [float(x) for x in np.asarray(ret)]
            say(f"{cond.name:>22s}  {name}: {cell['mean']:8.1f} ± {cell['std']:6.1f}  "
                f"({episodes} episodes, {time.perf_counter() - t0:.1f}s)")
    meta = {
        "seed": int(seed), "episodes": int(episodes),
        "env": dataclasses.asdict(env_cfg),
        "conditions": [{**dataclasses.asdict(c), "label": c.label} for c in conditions],
        "models": [{"name": n, "kind": m.kind, "source": m.source, "input_size": input_size(m)}
                   for n, m in zip(names, models)],
        "keys": f"episode i uses fold_in(PRNGKey({seed}), i), shared by all models and conditions",
    }
    return {"meta": meta, "results": results, "returns": returns}


# --------------------------------------------------------------------------------------- reporting
CSV_FIELDS = ("model", "condition", "status", "reason", *STAT_KEYS, "mean_length",
              "shuffle", "shuffle_every", "num_noise")


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (model, condition), in condition order."""
    conds = {c["name"]: c for c in report["meta"]["conditions"]}
    rows = []
    for model, cells in report["results"].items():
        for cname, cell in cells.items():
            c = conds[cname]
            rows.append({"model": model, "condition": cname, **cell, "shuffle": c["shuffle"],
                         "shuffle_every": c["shuffle_every"], "num_noise": c["num_noise"]})
    return rows


def save_report(report: dict[str, Any], out_dir: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``report.json`` (everything, with per-episode returns) and ``report.csv`` (statistics)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, cpath = out / "report.json", out / "report.csv"
    jpath.write_text(json.dumps(report, indent=1))
    with cpath.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(report_rows(report))
    return jpath, cpath


def format_table(report: dict[str, Any], width: int = 22) -> str:
    """Compact text table: one row per condition, one ``mean ± std`` column per model."""
    models = list(report["results"])
    conds = [c["name"] for c in report["meta"]["conditions"]]
    short = lambda s: s if len(s) <= width else "…" + s[-(width - 1):]  # noqa: E731
    cw = max([len("condition")] + [len(c) for c in conds])
    head = f"{'condition':<{cw}} | " + " | ".join(f"{short(m):>{width}}" for m in models)
    lines = [head, "-" * len(head)]
    notes: dict[str, list[str]] = {}
    for c in conds:
        cells = []
        for m in models:
            cell = report["results"][m][c]
            if cell["status"] == "ok":
                cells.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}")
            else:
                cells.append(NA)
                notes.setdefault(f"{m}: {cell['reason'].split(' (')[0]}", []).append(c)
        lines.append(f"{c:<{cw}} | " + " | ".join(f"{s:>{width}}" for s in cells))
    meta = report["meta"]
    env = meta["env"]
    lines.append(f"mean ± std of the return over {meta['episodes']} episodes per cell "
                 f"({env['name']}, {env['start']} start, max {env['max_steps']} steps, seed {meta['seed']})")
    for note, cs in notes.items():
        lines.append(f"n/a  {note} ({', '.join(cs)})")
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out_dir: str | os.PathLike,
                log: Callable[[str], None] | None = None) -> list[pathlib.Path]:
    """The three study figures that the report's conditions support, as PNGs in ``out_dir``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _msg: None)
    paths = [plot_returns(report, out / "returns_box.png")]
    if plots.noise_conditions(report):
        paths.append(plot_noise(report, out / "returns_vs_noise.png"))
    else:
        say("no shuffled noise conditions: skipping returns_vs_noise.png")
    if len(plots.period_conditions(report)) >= 2:
        paths.append(plot_shuffle_period(report, out / "returns_vs_shuffle_period.png"))
    else:
        say("fewer than two shuffle settings without noise: skipping returns_vs_shuffle_period.png")
    return paths


# -------------------------------------------------------------------------------- single episodes
@dataclass(frozen=True, eq=False)
class Recording:
    """One recorded episode (host numpy arrays, one entry per step; steps >= ``length`` are padding)."""

    model: Model
    condition: Condition
    env_params: Any
    ret: float
    length: int
    trajectory: dict[str, Any]


def _as_condition(condition: Condition | str) -> Condition:
    return condition if isinstance(condition, Condition) else parse_condition(condition)


def record_episode(model: Model, condition: Condition | str = "no_shuffle", env_cfg: EnvConfig | None = None,
                   seed: int = 0, episode_index: int = 0, steps: int | None = None) -> Recording:
    """Record episode ``episode_index`` of :func:`evaluate`'s episodes (same key) for at most
    ``steps`` steps (default: ``env_cfg.max_steps``)."""
    condition = _as_condition(condition)
    env_cfg = env_cfg or EnvConfig()
    reason = not_applicable(model, env_cfg, condition)
    if reason is not None:
        raise EvaluationError(f"{model.name} cannot run {condition.name}: {reason}")
    num_steps = min(int(steps or env_cfg.max_steps), env_cfg.max_steps)
    env, env_params = condition_env(env_cfg, condition)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), episode_index)
    out = jax.device_get(_record(model.policy, env, env_params, model.params, key, num_steps))
    traj = jax.tree.map(np.asarray, out.trajectory)
    return Recording(model=model, condition=condition, env_params=env_params, ret=float(out.ret),
                     length=int(out.length), trajectory=traj)


def render_episode_video(model: Model, path: str | os.PathLike, condition: Condition | str = "no_shuffle",
                         env_cfg: EnvConfig | None = None, seed: int = 0, episode_index: int = 0,
                         steps: int = 300, stride: int = 1, width: int = 480, height: int = 320,
                         fps: float = 30.0) -> pathlib.Path:
    """Render one episode (condition applied) to ``.mp4`` (imageio-ffmpeg) or ``.gif`` (pillow),
    with the step, action, reward and return drawn on each frame. Returns the path.

    For mp4 the frame size is rounded up to even numbers (H.264 needs them).
    """
    from pinn_jax import video

    path = pathlib.Path(path)
    try:
        fmt = video.video_format(path)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    env_cfg = env_cfg or EnvConfig()
    if _env_family(env_cfg.name) != "CartPoleSwingUp":
        raise EvaluationError(f"video rendering is only available for CartPoleSwingUp, not {env_cfg.name}")
    if stride < 1 or steps < 1:
        raise EvaluationError("video steps and stride must be >= 1")
    if fmt == "mp4":
        width, height = width + width % 2, height + height % 2
    rec = record_episode(model, condition, env_cfg, seed, episode_index, steps)
    inner = rec.trajectory["env_state"].env_state
    state_at = lambda t: jax.tree.map(lambda a: a[t], inner)  # noqa: E731
    header = [f"{model.name} | {rec.condition.label}"]
    frames = video.episode_frames(lambda t: render(state_at(t), rec.env_params, width, height), rec.length,
                                  rec.trajectory["action"], rec.trajectory["reward"], width=width,
                                  height=height, stride=stride, header=header)
    return video.write_video(frames, path, fps=fps)


def feature_names(env_cfg: EnvConfig, n_features: int) -> list[str]:
    """Names of the (un-shuffled) observation features, noise features last."""
    base = ["x", "ẋ", "cos θ", "sin θ", "θ̇"] if _env_family(env_cfg.name) == "CartPoleSwingUp" else []
    base = base[:n_features]
    if not base:
        env, env_params = condition_env(env_cfg, make_condition())
        base = [f"f{i}" for i in range(min(n_features, obs_dim_of(env, env_params)))]
    return base + [f"noise {i + 1}" for i in range(n_features - len(base))]


def plot_attention(model: Model, path: str | os.PathLike, condition: Condition | str = "no_shuffle",
                   env_cfg: EnvConfig | None = None, seed: int = 0, episode_index: int = 0,
                   steps: int | None = None, time_points: int = 4,
                   figsize: tuple[float, float] = (12.0, 7.0), dpi: int = 100) -> pathlib.Path:
    """Heatmaps of the attention matrix (16 latent slots × features) at a few time points and each
    feature's mean attention over time, for one episode; columns in the original feature order
    (shuffling undone). Only for attention-neuron models (ValueError otherwise). Returns the path."""
    if not isinstance(model.policy, AttentionNeuronPolicy):
        raise EvaluationError(f"--attention needs an attention-neuron model; {model.name} is a {model.kind} policy "
                         f"(it has no attention weights)")
    env_cfg = env_cfg or EnvConfig()
    rec = record_episode(model, condition, env_cfg, seed, episode_index, steps)
    n = rec.length
    traj = rec.trajectory
    attn = traj["aux"]["attention"][:n]
    perm = traj["env_state"].transform.perm[:n]
    title = f"Attention weights of {model.name} — {rec.condition.label} (episode return {rec.ret:.1f})"
    return plots.plot_attention_weights(attn, perm, path, feature_names(env_cfg, attn.shape[-1]), title=title,
                                        time_points=time_points, figsize=figsize, dpi=dpi)


# -------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pinn_jax.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="run directory, RUN_DIR/checkpoints/<gen>, 'official' or 'pretrained:NAME'")
    p.add_argument("--params", choices=ckpt.PARAM_CHOICES, default="mean",
                   help="parameters of a run: the ES mean (default), the best member, or eval_best (the mean "
                        "that scored best on held-out episodes during training)")
    p.add_argument("--episodes", type=int, default=200, help="episodes per condition (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode keys (default 0)")
    p.add_argument("--env", default=None, help="environment name (default: the first model's)")
    p.add_argument("--env-start", choices=("hard", "easy"), default="hard", help="start distribution (default hard)")
    p.add_argument("--max-steps", type=int, default=1000, help="episode length limit (default 1000)")
    p.add_argument("--shuffle-every", type=int, nargs="*", default=[50, 100, 250], metavar="K",
                   help="shuffle periods in steps, one condition each (default 50 100 250)")
    p.add_argument("--noise", type=int, nargs="*", default=[0, 5, 10, 15, 20, 30], metavar="N",
                   help="noise feature counts, shuffled once per episode (default 0 5 10 15 20 30)")
    p.add_argument("--noise-std", type=float, default=0.1, help="std of the noise features (default 0.1)")
    p.add_argument("--out", default=None, metavar="DIR", help="write report.json, report.csv and plots here")
    p.add_argument("--video", default=None, metavar="FILE", help="render one episode to FILE.mp4 or FILE.gif")
    p.add_argument("--video-condition", default="shuffle", metavar="NAME",
                   help="condition of the video episode (default shuffle)")
    p.add_argument("--video-model", default=None, metavar="MODEL", help="which model to film (default the first)")
    p.add_argument("--video-steps", type=int, default=300, help="steps rendered (default 300)")
    p.add_argument("--video-stride", type=int, default=1, help="render every k-th step (default 1)")
    p.add_argument("--video-size", default="480x320", metavar="WxH", help="frame size (default 480x320)")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate (default 30)")
    p.add_argument("--episode-index", type=int, default=0, metavar="I",
                   help="which evaluated episode (same key) the video and attention figure show (default 0)")
    p.add_argument("--attention", default=None, metavar="FILE.png", help="attention heatmap of one episode")
    p.add_argument("--attention-condition", default="shuffle", metavar="NAME",
                   help="condition of the attention episode (default shuffle)")
    p.add_argument("--attention-model", default=None, metavar="MODEL",
                   help="which model (default the first attention-neuron model)")
    return p.parse_args(argv)


def _pick(models: list[Model], spec: str | None, names: list[str]) -> Model | None:
    if spec is None:
        return models[0]
    for n, m in zip(names, models):
        if spec == n:
            return m
    return None


def _run(args: argparse.Namespace) -> int:
    info = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.episodes < 1:
        raise EvaluationError(f"--episodes must be >= 1, got {args.episodes}")
    if args.episode_index < 0 or args.video_steps < 1 or args.video_stride < 1:
        raise EvaluationError("--episode-index must be >= 0, --video-steps and --video-stride >= 1")
    conditions = default_conditions(args.shuffle_every, args.noise, args.noise_std)
    video_cond = parse_condition(args.video_condition, args.noise_std) if args.video else None
    attn_cond = parse_condition(args.attention_condition, args.noise_std) if args.attention else None
    size = re.fullmatch(r"(\d+)x(\d+)", args.video_size)
    if not size or min(int(size[1]), int(size[2])) < 16:
        raise EvaluationError(f"--video-size must look like 480x320 (each >= 16), got {args.video_size!r}")
    if args.video:
        from pinn_jax.video import video_format
        try:
            video_format(args.video)
        except ValueError as e:
            raise EvaluationError(str(e)) from None

    models = [load_model(spec, args.params) for spec in args.models]
    names = _unique_names(models)
    env_cfg = EnvConfig(name=args.env or models[0].env_cfg.name, start=args.env_start, max_steps=args.max_steps)

    # Check the single-episode outputs before the (long) evaluation.
    video_model = attn_model = None
    if args.video:
        video_model = _pick(models, args.video_model, names)
        if video_model is None:
            raise EvaluationError(f"--video-model {args.video_model!r} is not one of the models: {', '.join(names)}")
        reason = not_applicable(video_model, env_cfg, video_cond)
        if reason:
            raise EvaluationError(f"cannot film {video_model.name} in {video_cond.name}: {reason}")
    if args.attention:
        if args.attention_model is None:
            attn_model = next((m for m in models if isinstance(m.policy, AttentionNeuronPolicy)), None)
            if attn_model is None:
                raise EvaluationError("--attention needs an attention-neuron model, but none of the models is one "
                                 f"({', '.join(f'{n}: {m.kind}' for n, m in zip(names, models))})")
        else:
            attn_model = _pick(models, args.attention_model, names)
            if attn_model is None:
                raise EvaluationError(f"--attention-model {args.attention_model!r} is not one of: {', '.join(names)}")
            if not isinstance(attn_model.policy, AttentionNeuronPolicy):
                raise EvaluationError(f"--attention needs an attention-neuron model; {attn_model.name} is a "
                                 f"{attn_model.kind} policy")

    for n, m in zip(names, models):
        info(f"model {n}: {m.kind} policy from {m.source}")
    info(f"evaluating {len(models)} model(s) × {len(conditions)} conditions × {args.episodes} episodes "
         f"on {env_cfg.name} ({env_cfg.start} start, max {env_cfg.max_steps} steps)")
    report = evaluate(models, conditions, args.episodes, args.seed, env_cfg, log=info)
    print(format_table(report))
    if args.out:
        jpath, cpath = save_report(report, args.out)
        for p in (jpath, cpath, *write_plots(report, args.out, log=info)):
            print(f"wrote {p}")
    if args.video:
        w, h = int(size[1]), int(size[2])
        p = render_episode_video(video_model, args.video, video_cond, env_cfg, args.seed, args.episode_index,
                                 args.video_steps, args.video_stride, w, h, args.fps)
        print(f"wrote {p}")
    if args.attention:
        p = plot_attention(attn_model, args.attention, attn_cond, env_cfg, args.seed, args.episode_index)
        print(f"wrote {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on a bad model spec or option, with a one-line error)."""
    import matplotlib

    matplotlib.use("Agg")
    args = parse_args(argv)
    try:
        return _run(args)
    except (EvaluationError, ckpt.CheckpointError, ConfigError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
