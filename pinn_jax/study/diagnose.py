"""How a cart-pole swing-up agent earns its return: does it hold the pole up, or keep it spinning?

    python -m pinn_jax diagnose official pretrained:cartpole_pi pretrained:cartpole_mlp --episodes 300

The mean return hides the behaviour behind it. An agent that swings the pole round and round through
the top still earns about 0.8 per step, against 1.0 for one that balances it. On the hard start both
kinds lose the same episodes to the start itself. Their means then differ by only ~10-20%, while their
survivors behave quite differently. For each model this runs the episodes of ``pinn_jax.study.evaluate``
(same keys, unshuffled observations) and reports:

* ``survival``: the fraction of episodes that last all ``max_steps`` steps;
* ``survivor_return``: the mean return of those episodes;
* ``late_reward``: their mean reward per step in the second half of the episode;
* ``balanced``: the fraction of survivors with the pole upright (``cos θ > upright_cos``) in at least
  90% of the second half;
* ``spinning``: the fraction of survivors whose pole turns over at least once in the second half;
* ``turns``: full turns of the pole per survivor in the second half (see :func:`turns`);
* ``lost_step``: the median step at which the other episodes were lost (the cart left the track);
* ``lost_upright``: the share of those lost with the pole upright in at least half of their last
  ``LOST_WINDOW`` steps: the cart ran off while the pole was held, not during the swing-up;
* ``separation``: for an attention neuron, how differently its attention weighs its inputs, the mean of
  ``|A_qi - A_qj|`` over queries q, feature pairs i < j and every step played (0 to 2; see
  :func:`attention_separation`). Near 0 the attention is the same for every feature, so the policy sees only
  the sum of its inputs and cannot give two features different gains; ``n/a`` for other policies.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax import artifacts
from pinn_jax.config import STARTS, EnvConfig
from pinn_jax.envs import is_swingup
from pinn_jax.errors import ArgumentParser, EvaluationError, cli, float_range, int_range, positive_int, uint32
from pinn_jax.models import Model, load_model, unique_names
from pinn_jax.rollout import episode
from pinn_jax.study.conditions import DEFAULT_EPISODES, condition_env, episode_keys, parse_condition
from pinn_jax.training.progress import Tracker

__all__ = ["STAT_KEYS", "turns", "behaviour_stats", "attention_separation", "traces", "diagnose", "format_table",
           "main"]

POLE_KEYS = ("episodes", "survival", "mean_return", "survivor_return", "late_reward", "balanced", "spinning", "turns",
             "lost_step", "lost_upright")
STAT_KEYS = (*POLE_KEYS, "separation")
NA = "n/a"  # a pole statistic outside the swing-up
BALANCED_SHARE = 0.9  # a survivor counts as balanced when upright in this share of the second half
LOST_WINDOW = 20  # steps before a lost episode's end that say whether the pole was held when it was lost


def turns(theta: np.ndarray) -> np.ndarray:
    """Full turns of the pole along the last axis of ``theta``, the unwrapped angle (θ = 0 upright).

    A turn is counted when the pole, seen in the upper half (cos θ > 0), comes up next to another
    upright copy ``2πk`` than the last time: it went over the top, round the bottom and up the far
    side. A pole that wobbles at the top, swings at the bottom, or swings up and falls back the way
    it came counts none.
    """
    theta = np.asarray(theta, np.float64)
    copy = np.round(theta / (2 * np.pi))
    upper = np.cos(theta) > 0
    flat_copy, flat_upper = copy.reshape(-1, theta.shape[-1]), upper.reshape(-1, theta.shape[-1])
    counts = [np.abs(np.diff(k[u])).sum() for k, u in zip(flat_copy, flat_upper)]
    return np.asarray(counts).reshape(theta.shape[:-1])


def behaviour_stats(theta: np.ndarray, reward: np.ndarray, length: np.ndarray, max_steps: int,
                    upright_cos: float = 0.95) -> dict[str, float]:
    """The module's statistics but ``separation`` from per-step pole angles and rewards ``(episodes, max_steps)``.

    ``length`` is each episode's number of steps; survivors are the episodes with ``length == max_steps``.
    The survivor statistics are NaN when no episode survives, the lost ones when none is lost.
    """
    theta, reward, length = np.asarray(theta), np.asarray(reward, np.float64), np.asarray(length)
    if theta.shape != reward.shape or theta.shape != (length.shape[0], max_steps):
        raise EvaluationError(f"theta {theta.shape} and reward {reward.shape} must both be (episodes, {max_steps})")
    survived = length >= max_steps
    returns = reward.sum(1)
    late = slice(max_steps // 2, None)
    out = {"episodes": int(length.shape[0]), "survival": float(survived.mean()),
           "mean_return": float(returns.mean()), **_lost_stats(theta, length, ~survived, upright_cos)}
    if not survived.any():
        return {**out, **{k: float("nan") for k in POLE_KEYS if k not in out}}
    upright = (np.cos(theta[survived, late]) > upright_cos).mean(1)
    n_turns = turns(theta[survived, late])
    return {**out, "survivor_return": float(returns[survived].mean()),
            "late_reward": float(reward[survived, late].mean()),
            "balanced": float((upright >= BALANCED_SHARE).mean()),
            "spinning": float((n_turns >= 1).mean()), "turns": float(n_turns.mean())}


def _lost_stats(theta: np.ndarray, length: np.ndarray, lost: np.ndarray, upright_cos: float) -> dict[str, float]:
    """``lost_step`` and ``lost_upright`` of the episodes marked ``lost`` (NaN when none is lost)."""
    if not lost.any():
        return {"lost_step": float("nan"), "lost_upright": float("nan")}
    lost_length = length[lost]
    steps = np.arange(theta.shape[1])[None, :]
    last = (steps < lost_length[:, None]) & (steps >= lost_length[:, None] - LOST_WINDOW)  # each one's last steps
    up = ((np.cos(theta[lost]) > upright_cos) & last).sum(1) / last.sum(1)
    return {"lost_step": float(np.median(lost_length)), "lost_upright": float((up >= 0.5).mean())}


def attention_separation(attention: jax.Array) -> jax.Array:
    """Mean ``|A_qi - A_qj|`` over queries q and feature pairs i < j: ``(..., queries, features) -> (...)``.

    0 when every feature gets the same attention weights, 2 when the weights are +-1 and opposite for every
    pair; NaN with fewer than two features.
    """
    m, n = attention.shape[-2:]
    if n < 2:
        return jnp.full(attention.shape[:-2], jnp.nan)
    diff = jnp.abs(attention[..., :, :, None] - attention[..., :, None, :])  # (..., M, N, N), zero diagonal
    return diff.sum((-3, -2, -1)) / (m * n * (n - 1))


@functools.partial(jax.jit, static_argnames=("policy", "env", "num_steps", "pole"))
def _traces(policy: Any, env: Any, env_params: Any, params: Any, keys: jax.Array, num_steps: int, pole: bool):
    def one(key):
        ep = episode(policy, env, env_params, params, key, num_steps, record=True)
        reward = ep.trajectory["reward"]
        theta = ep.trajectory["env_state"].env_state.theta if pole else jnp.full_like(reward, jnp.nan)
        aux = ep.trajectory["aux"]
        sep = attention_separation(aux["attention"]) if "attention" in aux else jnp.full_like(reward, jnp.nan)
        return theta, reward, ep.length, sep

    return jax.vmap(one)(keys)


def traces(model: Model, episodes: int, seed: int = 0, env_cfg: EnvConfig | None = None,
           chunk: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(theta, reward, length, separation)``: per step the pole angle before it (NaN outside the swing-up,
    which has no pole angle), its reward and the attention separation (NaN for a policy without attention);
    each episode's length. Unshuffled observations; episode ``i`` uses ``pinn_jax.study.evaluate``'s key ``i``;
    ``chunk`` episodes are recorded per call.
    """
    env_cfg = env_cfg or model.env_cfg
    env, env_params = condition_env(env_cfg, parse_condition("no_shuffle"))
    keys = episode_keys(seed, episodes)
    pole = is_swingup(env_cfg.name)
    parts = [_traces(model.policy, env, env_params, model.params, keys[i:i + chunk], env_cfg.max_steps, pole)
             for i in range(0, episodes, chunk)]
    return tuple(np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(4))


def _mean_played(per_step: np.ndarray, length: np.ndarray) -> float | str:
    """Mean of a per-step statistic over the steps each episode played; ``"n/a"`` where it is NaN."""
    played = np.arange(per_step.shape[1])[None, :] < length[:, None]
    values = per_step[played]
    return NA if np.isnan(values).all() else float(values.mean())


def diagnose(models: Sequence[Model], episodes: int = DEFAULT_EPISODES, seed: int = 0, env_cfg: EnvConfig | None = None,
             upright_cos: float = 0.95, tick: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """``{model name: behaviour_stats}`` for each model on the same episodes (a repeated name gets ``#2``...);
    ``tick`` is called after each model.

    Outside the swing-up only ``episodes``, ``survival`` (episodes lasting ``max_steps``), ``mean_return`` and
    ``separation`` apply; the pole statistics are ``"n/a"``.
    """
    out = {}
    for name, m in zip(unique_names(models), models):
        cfg = env_cfg or m.env_cfg
        theta, reward, length, sep = traces(m, episodes, seed, cfg)
        if is_swingup(cfg.name):
            out[name] = behaviour_stats(theta, reward, length, cfg.max_steps, upright_cos)
        else:
            returns = np.asarray(reward, np.float64).sum(1)
            out[name] = {"episodes": int(length.shape[0]), "survival": float((length >= cfg.max_steps).mean()),
                         "mean_return": float(returns.mean()), **{k: NA for k in POLE_KEYS[3:]}}
        out[name]["separation"] = _mean_played(sep, length)
        if tick is not None:
            tick(name)
    return out


def format_table(report: dict[str, dict[str, float]]) -> str:
    """A plain-text table, one row per model."""
    width = max(len(n) for n in report) + 2
    lines = ["model".ljust(width) + "".join(k.rjust(16) for k in STAT_KEYS)]
    for name, st in report.items():
        lines.append(name.ljust(width) + "".join(
            (f"{st[k]:>16}" if isinstance(st[k], (int, str)) else f"{st[k]:16.3f}") for k in STAT_KEYS))
    return "\n".join(lines)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 2 with a one-line error on a bad model spec or option."""
    p = ArgumentParser(prog="python -m pinn_jax diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="run directory, FILE.npz, 'official' or 'pretrained:NAME'")
    p.add_argument("--params", choices=artifacts.PARAM_CHOICES, default="mean", help="parameters of a run directory")
    p.add_argument("--episodes", type=positive_int, default=DEFAULT_EPISODES, help="episodes per model")
    p.add_argument("--seed", type=uint32, default=0, help="seed of the episode keys (those of pinn_jax.study.evaluate)")
    p.add_argument("--env-start", choices=STARTS, default=None,
                   help="start distribution (default: each model's own)")
    p.add_argument("--max-steps", type=int_range(2), default=None, help="episode length (default: each model's own)")
    p.add_argument("--upright-cos", type=float_range(-1.0, 1.0), default=0.95,
                   help="cos θ above which the pole counts as upright")
    p.add_argument("--out", default=None, metavar="DIR", help="write diagnose.json here")
    p.add_argument("--force", action="store_true",
                   help="replace a diagnose.json in --out (else it is refused before anything runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every 30 s instead")
    args = p.parse_args(argv)
    out = artifacts.output_dir(args.out, "--out", [artifacts.DIAGNOSE_JSON], args.force) if args.out else None
    models = [load_model(spec, args.params) for spec in args.models]
    if args.env_start or args.max_steps:  # each model keeps its own env; only the start and length change
        models = [dataclasses.replace(m, env_cfg=dataclasses.replace(
            m.env_cfg, start=args.env_start or m.env_cfg.start, max_steps=args.max_steps or m.env_cfg.max_steps))
            for m in models]
    with Tracker(len(models), "diagnose", bar=not args.no_progress) as bar:
        report = diagnose(models, args.episodes, args.seed, None, args.upright_cos, tick=lambda n: bar.advance(1, n))
    print(format_table(report))
    if out is not None:
        path = out / artifacts.DIAGNOSE_JSON
        artifacts.write_text(path, json.dumps(report, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
