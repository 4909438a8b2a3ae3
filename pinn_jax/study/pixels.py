"""Image frames as pictures, for the pixel study: a frame of channels (MinAtar's binary ones) as an RGB image,
the frame as the agent receives it, and a vision policy's attention mapped back onto the frame.

An observation's patches relate to the frame's grid through :func:`~pinn_jax.envs.observed_cells` (the
recorded :class:`~pinn_jax.envs.PatchState`'s ``keep`` and permutation): observed patch ``j`` is grid cell
``cells[j]``, or a noise patch where that is -1.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from pinn_jax.envs import unpatchify

__all__ = ["palette", "frame_rgb", "agent_view", "attention_map", "side_by_side"]


def palette(channels: int) -> np.ndarray:
    """``(channels, 3)`` uint8: one colour per channel (matplotlib's tab10, cycled)."""
    colors = np.asarray(colormaps["tab10"].colors)[np.arange(channels) % 10]
    return np.round(colors * 255).astype(np.uint8)


def frame_rgb(frame: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` frame -> ``(H, W, 3)`` uint8: each pixel the colour (:func:`palette`) of its last channel
    above 0.5, black where none is."""
    on = np.asarray(frame) > 0.5
    last = on.shape[-1] - 1 - np.argmax(on[..., ::-1], axis=-1)
    return np.where(on.any(axis=-1)[..., None], palette(on.shape[-1])[last], 0).astype(np.uint8)


def agent_view(current: np.ndarray, grid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The frame as the agent receives it: ``current`` (N, h*w*C), the newest frame of each observed patch in
    observation order, patch ``j`` put in cell ``j`` of the ``(rows, columns)`` grid row by row (the permuted
    arrangement). Cells past the observation (occluded patches) stay 0; noise patches past the grid add rows."""
    current = np.asarray(current)
    rows, cols = grid
    cells = max(rows * cols, -(-len(current) // cols) * cols)
    full = np.zeros((cells, current.shape[-1]), current.dtype)
    full[:len(current)] = current
    return unpatchify(full, (cells // cols, cols), shape)


def attention_map(attention: np.ndarray, cells: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The attention ``(..., M, N)`` (M queries over N observed patches) that each grid cell's patch received,
    summed over the queries: ``(..., rows, columns)``, the observed patches put back in their cells
    (``cells`` (..., N), :func:`~pinn_jax.envs.observed_cells`); noise patches' attention is left out, so
    without them the map sums to M. Occluded cells get 0."""
    per_patch = np.asarray(attention, np.float64).sum(axis=-2)  # (..., N)
    cells = np.asarray(cells)
    rows, cols = grid
    onehot = cells[..., None] == np.arange(rows * cols)  # (..., N, cells); a noise patch (-1) matches none
    return np.einsum("...n,...nc->...c", per_patch, onehot).reshape(*per_patch.shape[:-1], rows, cols)


def side_by_side(left: np.ndarray, right: np.ndarray, width: int, height: int, top: int) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 picture: the RGB images ``left`` and ``right`` enlarged by the same whole
    factor (nearest neighbour), each centred in its half below a white band of ``top`` rows (for text)."""
    tallest = max(left.shape[0], right.shape[0])
    half = width // 2
    scale = max(1, min((height - top) // tallest, (half - 4) // max(left.shape[1], right.shape[1])))
    out = np.full((height, width, 3), 255, np.uint8)
    out[top:] = 64
    for i, img in enumerate((left, right)):
        big = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)[:height - top, :half]
        y, x = top + (height - top - big.shape[0]) // 2, i * half + (half - big.shape[1]) // 2
        out[y:y + big.shape[0], x:x + big.shape[1]] = big
    return out
