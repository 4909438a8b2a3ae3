"""Single recorded episodes of a model: the trajectory, a video of it, and its attention maps.

Episode ``i`` here is episode ``i`` of :func:`pinn_jax.study.evaluate.evaluate` (the same key), so a video or
an attention figure shows an episode whose return is in the report.
"""

from __future__ import annotations

import functools
import os
import pathlib
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from pinn_jax.config import EnvConfig
from pinn_jax.envs import is_swingup, render
from pinn_jax.errors import EvaluationError
from pinn_jax.experiment import obs_dim_of
from pinn_jax.models import Model
from pinn_jax.policies import Policy
from pinn_jax.rollout import episode
from pinn_jax.study import plots, video
from pinn_jax.study.conditions import Condition, condition_env, make_condition, not_applicable, parse_condition
from pinn_jax.training.memory import episode_bytes

__all__ = ["Recording", "record_episode", "recording_bytes", "check_filmable", "render_episode_video", "video_bytes",
           "feature_names", "plot_attention"]

SWINGUP_FEATURES = ("x", "ẋ", "cos θ", "sin θ", "θ̇")


@dataclass(frozen=True, eq=False)
class Recording:
    """One recorded episode (host numpy arrays, one entry per step; steps >= ``length`` are padding)."""

    model: Model
    condition: Condition
    env_params: Any
    ret: float
    length: int
    trajectory: dict[str, Any]


@functools.partial(jax.jit, static_argnames=("policy", "env", "num_steps"))
def _record(policy: Policy, env: Any, env_params: Any, params: Any, key: jax.Array, num_steps: int):
    return episode(policy, env, env_params, params, key, num_steps, record=True)


def _as_condition(condition: Condition | str) -> Condition:
    return condition if isinstance(condition, Condition) else parse_condition(condition)


def record_episode(model: Model, condition: Condition | str = "no_shuffle", env_cfg: EnvConfig | None = None,
                   seed: int = 0, episode_index: int = 0, steps: int | None = None) -> Recording:
    """Record episode ``episode_index`` of :func:`~pinn_jax.study.evaluate.evaluate`'s episodes (same key) for at
    most ``steps`` steps (default: ``env_cfg.max_steps``)."""
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


def recording_bytes(model: Model, condition: Condition | str, env_cfg: EnvConfig, steps: int | None = None) -> int:
    """A rough upper bound of the bytes :func:`record_episode` holds: an episode's state for every step recorded."""
    env, env_params = condition_env(env_cfg, _as_condition(condition))
    return min(int(steps or env_cfg.max_steps), env_cfg.max_steps) * episode_bytes(model.policy, env, env_params,
                                                                                  model.params)


def video_bytes(model: Model, condition: Condition | str, env_cfg: EnvConfig, steps: int | None = None,
                stride: int = 1, width: int = 480, height: int = 320) -> int:
    """A rough upper bound of the bytes :func:`render_episode_video` holds: the recording, every frame (twice: a
    gif stacks them) and the canvas they are drawn on."""
    frames = -(-min(int(steps or env_cfg.max_steps), env_cfg.max_steps) // stride)
    return recording_bytes(model, condition, env_cfg, steps) + (2 * 3 * frames + 16) * width * height


def check_filmable(env_cfg: EnvConfig) -> None:
    """Raise a one-line :class:`EvaluationError` unless episodes of ``env_cfg`` can be rendered."""
    if not is_swingup(env_cfg.name):
        raise EvaluationError(f"video rendering is only available for CartPoleSwingUp, not {env_cfg.name}")


def render_episode_video(model: Model, path: str | os.PathLike, condition: Condition | str = "no_shuffle",
                         env_cfg: EnvConfig | None = None, seed: int = 0, episode_index: int = 0,
                         steps: int | None = None, stride: int = 1, width: int = 480, height: int = 320,
                         fps: float = 30.0) -> pathlib.Path:
    """Render one episode (condition applied) to ``.mp4`` (imageio-ffmpeg) or ``.gif`` (pillow),
    with the step, action, reward and return drawn on each frame: its first ``steps`` steps (None: the
    whole episode). Returns the path.

    For mp4 the frame size is rounded up to even numbers (H.264 needs them).
    """
    path = pathlib.Path(path)
    try:
        fmt = video.video_format(path)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    env_cfg = env_cfg or EnvConfig()
    check_filmable(env_cfg)
    if stride < 1 or (steps is not None and steps < 1):
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
    """Names of the (un-shuffled) observation features, noise features last: the swing-up's own names,
    ``obs[i]`` for any other env."""
    if is_swingup(env_cfg.name):
        base = list(SWINGUP_FEATURES[:n_features])
    else:
        env, env_params = condition_env(env_cfg, make_condition())
        base = [f"obs[{i}]" for i in range(min(n_features, obs_dim_of(env, env_params)))]
    return base + [f"noise {i + 1}" for i in range(n_features - len(base))]


def plot_attention(model: Model, path: str | os.PathLike, condition: Condition | str = "no_shuffle",
                   env_cfg: EnvConfig | None = None, seed: int = 0, episode_index: int = 0,
                   steps: int | None = None, time_points: int = 4,
                   figsize: tuple[float, float] = (12.0, 7.0), dpi: int = 100) -> pathlib.Path:
    """Heatmaps of the attention matrix (latent slots × features) at a few time points and each
    feature's mean attention over time, for one episode; columns in the original feature order
    (shuffling undone). Only for attention-neuron models. Returns the path."""
    if model.kind != "attention_neuron":
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
