"""Image observations as a set of patches: the observation pipeline of the vision policies.

Every frame ``(H, W, C)`` of an image env is cut into non-overlapping ``h x w`` patches (``size``: a side ``s``
for ``s x s``, or ``(h, w)``: rectangles, e.g. ``(1, W)`` cuts the frame into its rows), numbered row by row over
the ``(H / h, W / w)`` grid; a patch's pixels are flattened in ``(row, column, channel)`` order into
``D = h * w * C`` values. The last ``frames`` frames are stacked per patch, oldest first
(at reset the first frame fills the whole stack, as the authors' frame stack does), so one patch has
``F = frames * D`` features and the observation is ``(num_patches, F)``: a policy can take frame
differences within a patch's row, and a patch keeps its history wherever a permutation puts it.

The conditions of the vector study apply with a patch in the role of a feature, through the same
:class:`~pinn_jax.envs.wrappers.ObsTransform` (``transform_reset`` / ``transform_step`` on the transposed
``(F, num_patches)`` array): ``num_noise`` noise patches of ``F`` i.i.d. Normal(0, noise_std) values, drawn
afresh at every step, are appended; the patches are permuted once per episode (``shuffle``) and again every
``shuffle_every`` steps. ``occlude`` drops ``floor(occlude * num_patches)`` of the real patches, a random set
drawn at reset and kept for the episode (the authors' occlusion: the policy never sees them), before noise
and permutation; the kept ones stay in grid order. ``flatten`` gives the result as one vector, patch by
patch, for the policies that take vectors (with ``size=1`` and ``frames=1`` exactly ``frame.reshape(-1)``).

Pure and PRNG-keyed: everything random is drawn from the keys ``reset_env`` / ``step_env`` are given and
kept in :class:`PatchState`, so jit and vmap apply and a rollout is reproducible from its key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from pinn_jax.envs.wrappers import ObsTransform, TransformState, _Wrapper, transform_reset, transform_step
from pinn_jax.errors import ConfigError

__all__ = ["Patches", "PatchState", "PatchWrapper", "observed_cells", "patchify", "unpatchify"]


@struct.dataclass
class Patches:
    """Static, hashable patch geometry; an invalid one raises ``ConfigError``."""

    size: int | tuple[int, ...] = struct.field(pytree_node=False, default=1)
    frames: int = struct.field(pytree_node=False, default=1)
    occlude: float = struct.field(pytree_node=False, default=0.0)
    flatten: bool = struct.field(pytree_node=False, default=False)

    def __post_init__(self) -> None:
        sides = self.size if isinstance(self.size, tuple) and len(self.size) in (1, 2) else (self.size,)
        for name, value in [*(("size", v) for v in sides), ("frames", self.frames)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                what = "an int >= 1, or (height, width) of them" if name == "size" else "an int >= 1"
                raise ConfigError(f"patch {name} must be {what}, got {getattr(self, name)!r}")
        if not 0.0 <= self.occlude < 1.0:
            raise ConfigError(f"occlude must be a fraction in [0, 1), got {self.occlude!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)``, a patch's height and width."""
        sides = self.size if isinstance(self.size, tuple) else (self.size,)
        return (sides[0], sides[-1])

    def grid(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The ``(rows, columns)`` patch grid of frames of ``shape`` ``(H, W, C)``; ``ConfigError`` unless the
        patch size divides both sides."""
        if len(shape) != 3:
            raise ConfigError(f"patches are cut from (height, width, channels) frames, got shape {tuple(shape)}")
        (h, w, _), (ph, pw) = shape, self.shape
        if h % ph or w % pw:
            raise ConfigError(f"patch size {ph}x{pw} does not divide {h}x{w} frames (try a divisor of both)")
        return h // ph, w // pw

    def kept(self, num_patches: int) -> int:
        """How many of ``num_patches`` real patches are left after occlusion."""
        return num_patches - int(self.occlude * num_patches)


def patchify(frame: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """``(H, W, C)`` frame -> ``(H/h * W/w, h*w*C)`` patches of ``shape`` ``(h, w)``, row by row over the grid."""
    (h, w, c), (ph, pw) = frame.shape, shape
    grid = frame.reshape(h // ph, ph, w // pw, pw, c).transpose(0, 2, 1, 3, 4)
    return grid.reshape((h // ph) * (w // pw), ph * pw * c)


def unpatchify(patches: jax.Array, grid: tuple[int, int], shape: tuple[int, int]) -> jax.Array:
    """The inverse of :func:`patchify`: ``(rows * columns, h*w*C)`` patches of ``shape`` ``(h, w)``, row by row
    over a ``(rows, columns)`` ``grid`` -> the ``(H, W, C)`` frame (NumPy arrays stay NumPy)."""
    (rows, cols), (ph, pw) = grid, shape
    c = patches.shape[-1] // (ph * pw)
    return patches.reshape(rows, cols, ph, pw, c).transpose(0, 2, 1, 3, 4).reshape(rows * ph, cols * pw, c)


def observed_cells(keep: jax.Array, perm: jax.Array) -> jax.Array:
    """The grid cell of each patch of an observation, -1 for a noise patch: position ``j`` holds entry ``perm[j]``
    of the kept patches (cells ``keep``) followed by the noise patches. ``keep`` (..., kept) and ``perm`` (..., N)
    as in :class:`PatchState` (leading axes: e.g. the steps of a recorded episode)."""
    keep, perm = jnp.asarray(keep), jnp.asarray(perm)
    kept = keep.shape[-1]
    return jnp.where(perm < kept, jnp.take_along_axis(keep, jnp.minimum(perm, kept - 1), axis=-1), -1)


@struct.dataclass
class PatchState(environment.EnvState):
    env_state: Any
    history: jax.Array  # (num_patches, frames, D): the stacked patches, oldest frame first, grid order
    keep: jax.Array  # int32 (kept,): the real patches left by occlusion, in grid order
    transform: TransformState  # the permutation over kept + noise patches
    time: jax.Array  # mirrors env_state.time


class PatchWrapper(_Wrapper):
    """An image env's observations as ``(num_patches, frames * D)`` stacked patches (module docstring),
    with the vector study's conditions applied to patches."""

    def __init__(self, env: environment.Environment, patches: Patches, transform: ObsTransform = ObsTransform()
                 ) -> None:
        super().__init__(env)
        self.patches = patches
        self.cfg = transform
        self.grid = patches.grid(tuple(env.observation_space(env.default_params).shape))

    def _observe(self, key: jax.Array, history: jax.Array, keep: jax.Array, tstate: TransformState | None
                 ) -> tuple[jax.Array, TransformState]:
        rows = history.reshape(history.shape[0], -1)[keep]  # (kept, F)
        if tstate is None:
            out, tstate = transform_reset(key, self.cfg, rows.T)
        else:
            out, tstate = transform_step(key, self.cfg, tstate, rows.T)
        out = out.T  # (kept + num_noise, F)
        return (out.reshape(-1) if self.patches.flatten else out), tstate

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, PatchState]:
        k_env, k_occ, k_tr = jax.random.split(key, 3)
        frame, env_state = self.env.reset_env(k_env, params)
        first = patchify(jnp.asarray(frame, jnp.float32), self.patches.shape)
        n = first.shape[0]
        history = jnp.broadcast_to(first[:, None], (n, self.patches.frames, first.shape[1]))
        if self.patches.occlude:
            keep = jnp.sort(jax.random.permutation(k_occ, n)[:self.patches.kept(n)]).astype(jnp.int32)
        else:
            keep = jnp.arange(n, dtype=jnp.int32)
        obs, tstate = self._observe(k_tr, history, keep, None)
        return obs, PatchState(env_state=env_state, history=history, keep=keep, transform=tstate,
                               time=env_state.time)

    def step_env(self, key: jax.Array, state: PatchState, action: Any, params: Any
                 ) -> tuple[jax.Array, PatchState, jax.Array, jax.Array, dict]:
        k_env, k_tr = jax.random.split(key)
        frame, env_state, reward, terminated, info = self.env.step_env(k_env, state.env_state, action, params)
        new = patchify(jnp.asarray(frame, jnp.float32), self.patches.shape)
        history = jnp.concatenate([state.history[:, 1:], new[:, None]], axis=1)
        obs, tstate = self._observe(k_tr, history, state.keep, state.transform)
        return obs, PatchState(env_state=env_state, history=history, keep=state.keep, transform=tstate,
                               time=env_state.time), reward, terminated, info

    def observation_space(self, params: Any = None) -> spaces.Box:
        """A Box of the output's shape with the inner frame's loosest bounds (unbounded with noise patches)."""
        params = self.default_params if params is None else params
        space = self.env.observation_space(params)
        c = space.shape[-1]
        n = self.patches.kept(self.grid[0] * self.grid[1]) + self.cfg.num_noise
        shape = (n, self.patches.frames * self.patches.shape[0] * self.patches.shape[1] * c)
        low, high = float(jnp.min(jnp.asarray(space.low))), float(jnp.max(jnp.asarray(space.high)))
        if self.cfg.num_noise:
            low, high = -float("inf"), float("inf")
        return spaces.Box(low, high, (shape[0] * shape[1],) if self.patches.flatten else shape, jnp.float32)
