"""Evaluation conditions: an observation transform (:class:`~pinn_jax.envs.ObsTransform`) with a name, the
study's default list, and the paired episodes every condition and model share.

Names: ``no_shuffle``, ``shuffle`` (once per episode), ``shuffle_every_K``, ``noise_N`` (N noise features,
shuffled once), ``noise_N_every_K``, ``noise_N_no_shuffle``, and for image envs ``occlude_F`` (the fraction F
of the patches dropped, the rest shuffled once). Episode ``i`` uses the key ``fold_in(PRNGKey(seed), i)`` in every
condition and for every model, so comparisons are paired.

On an image env a patch is a feature (:mod:`pinn_jax.envs.patches`): the permutations move patches, a noise
feature is a noise patch, and each model sees the frames cut by its own ``env.patch_size`` (a flattened frame for
an MLP on ``patch_size: 1``: its pixels are what a shuffle moves, each pixel's channels kept together).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from pinn_jax.config import EnvConfig
from pinn_jax.envs import ObsTransform, PatchWrapper, same_task
from pinn_jax.errors import ConfigError, EvaluationError
from pinn_jax.experiment import PolicyEnv, build_env, obs_dim_of
from pinn_jax.models import Model

__all__ = ["DEFAULT_EPISODES", "SHUFFLE_PERIODS", "NOISE_COUNTS", "ACROSS_ENVS", "Condition", "make_condition",
           "occlusion_condition", "parse_condition", "default_conditions", "episode_keys", "condition_env",
           "not_applicable"]

# The study's defaults, for the functions and the command lines alike
DEFAULT_EPISODES = 200  # episodes per condition of every evaluation-type command (evaluate, diagnose, study)
SHUFFLE_PERIODS = (50, 100, 250)  # evaluate's periodic-shuffle conditions (--shuffle-every)
NOISE_COUNTS = (0, 5, 10, 15, 20, 30)  # evaluate's noise-feature conditions (--noise)
ACROSS_ENVS = ("no_shuffle", "shuffle", "shuffle_every_50", "noise_5")  # python -m pinn_jax study's conditions


@dataclass(frozen=True)
class Condition:
    """A named observation condition: the :class:`ObsTransform` (validated when built) its episodes see and the
    fraction of image patches ``occlude`` drops (:class:`~pinn_jax.envs.Patches`)."""

    name: str
    transform: ObsTransform = ObsTransform()
    occlude: float = 0.0

    @property
    def label(self) -> str:
        """Human-readable description for plots and tables."""
        t = self.transform
        if not t.shuffle:
            base = "no shuffle"
        elif t.shuffle_every:
            base = f"shuffle every {t.shuffle_every} steps"
        else:
            base = "shuffle once per episode"
        return (base + (f" + {t.num_noise} noise features" if t.num_noise else "")
                + (f" + {self.occlude:.0%} of patches occluded" if self.occlude else ""))

    def as_dict(self) -> dict[str, Any]:
        """The name, the transform's fields, the occluded fraction and the label, for reports."""
        return {"name": self.name, **dataclasses.asdict(self.transform), "occlude": self.occlude, "label": self.label}


def _condition_name(shuffle: bool, shuffle_every: int, num_noise: int) -> str:
    if num_noise:
        name = f"noise_{num_noise}"
        if shuffle_every:
            name += f"_every_{shuffle_every}"
        return name if shuffle else name + "_no_shuffle"
    if not shuffle:
        return "no_shuffle"
    return f"shuffle_every_{shuffle_every}" if shuffle_every else "shuffle"


def make_condition(shuffle: bool = ObsTransform.shuffle, shuffle_every: int = ObsTransform.shuffle_every,
                   num_noise: int = ObsTransform.num_noise, noise_std: float = ObsTransform.noise_std) -> Condition:
    """A condition with its canonical name (``no_shuffle``, ``shuffle``, ``shuffle_every_K``, ``noise_N``); a
    shuffle period implies shuffling."""
    shuffle = bool(shuffle or shuffle_every)
    name = _condition_name(shuffle, shuffle_every, num_noise)
    try:
        return Condition(name, ObsTransform(shuffle=shuffle, shuffle_every=int(shuffle_every), num_noise=int(num_noise),
                                            noise_std=float(noise_std)))
    except ConfigError as e:
        raise EvaluationError(f"condition {name!r}: {e}") from None


def occlusion_condition(fraction: float, noise_std: float = ObsTransform.noise_std) -> Condition:
    """``occlude_F``: the fraction ``F`` (0 < F < 1) of an image's patches dropped, a random set per episode, and
    the rest shuffled once per episode."""
    fraction = float(fraction)
    name = f"occlude_{fraction:g}"
    if not 0.0 < fraction < 1.0:
        raise EvaluationError(f"condition {name!r}: the occluded fraction must be > 0 and < 1")
    return dataclasses.replace(make_condition(True, noise_std=noise_std), name=name, occlude=fraction)


_NAME_RE = re.compile(r"^(?:(no_shuffle)|(shuffle)|shuffle_every_(\d+)|noise_(\d+)(?:_every_(\d+))?(_no_shuffle)?"
                      r"|occlude_(\d*\.?\d+))$")


def parse_condition(name: str, noise_std: float = ObsTransform.noise_std) -> Condition:
    """Condition from its name (see the module docstring)."""
    m = _NAME_RE.match(str(name).strip())
    if not m:
        raise EvaluationError(f"unknown condition {name!r}: use no_shuffle, shuffle, shuffle_every_K, noise_N, "
                              f"noise_N_every_K, noise_N_no_shuffle or occlude_F")
    no_shuf, shuf, every, noise, noise_every, noise_plain, occlude = m.groups()
    if occlude:
        return occlusion_condition(float(occlude), noise_std)
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


def default_conditions(shuffle_every: Sequence[int] = SHUFFLE_PERIODS, noise: Sequence[int] = NOISE_COUNTS,
                       noise_std: float = ObsTransform.noise_std, occlude: Sequence[float] = ()) -> list[Condition]:
    """The study: no shuffle, shuffle once per episode, shuffle every k steps (each ``shuffle_every``),
    for each ``noise`` count N > 0, N noise features appended with the features shuffled once
    per episode (N = 0 of that series is the ``shuffle`` condition) and, for each ``occlude`` fraction F > 0,
    ``occlude_F`` (image envs; F = 0 is again ``shuffle``)."""
    if any(int(k) < 1 for k in shuffle_every):
        raise EvaluationError(f"shuffle periods must be >= 1, got {list(shuffle_every)}")
    if any(int(n) < 0 for n in noise):
        raise EvaluationError(f"noise feature counts must be >= 0, got {list(noise)}")
    conds = [make_condition(noise_std=noise_std), make_condition(True, noise_std=noise_std)]
    conds += [make_condition(True, int(k), noise_std=noise_std) for k in dict.fromkeys(shuffle_every)]
    conds += [make_condition(True, 0, int(n), noise_std) for n in dict.fromkeys(noise) if int(n) > 0]
    conds += [occlusion_condition(f, noise_std) for f in dict.fromkeys(map(float, occlude)) if f != 0.0]
    return conds


def episode_keys(seed: int, episodes: int) -> jax.Array:
    """Episode ``i``'s key is ``fold_in(PRNGKey(seed), i)`` (independent of how many are run)."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(episodes))


def condition_env(env_cfg: EnvConfig, condition: Condition, model: Model | None = None) -> tuple[PolicyEnv, Any]:
    """The wrapped env and its params for a condition, as ``model`` sees it: on its own task, an image env's frames
    cut by its ``env.patch_size`` into patches for its policy (wrappers compare by value, so compiled rollouts are
    reused across calls). An occlusion condition on an env of feature vectors is a one-line error."""
    policy = None
    if model is not None and same_task(model.env_cfg.name, env_cfg.name):
        env_cfg, policy = dataclasses.replace(env_cfg, patch_size=model.env_cfg.patch_size), model.policy
    env, env_params = build_env(env_cfg, condition.transform, policy=policy)
    if condition.occlude:
        if not isinstance(env, PatchWrapper):
            raise EvaluationError(f"condition {condition.name!r} drops image patches; {env_cfg.name} observes feature "
                                  f"vectors (occlusion is for image envs)")
        env = PatchWrapper(env.env, env.patches.replace(occlude=condition.occlude), env.cfg)
    return env, env_params


def not_applicable(model: Model, env_cfg: EnvConfig, condition: Condition) -> str | None:
    """Why ``model`` cannot run in ``condition`` (checked up front), or None if it can."""
    if not same_task(model.env_cfg.name, env_cfg.name):
        return f"trained on {model.env_cfg.name}, not {env_cfg.name}"
    fixed = model.input_size
    if fixed is not None:
        n = obs_dim_of(*condition_env(env_cfg, condition, model))
        if n != fixed:
            return f"fixed input size {fixed} (condition gives {n} features)"
    return None
