"""Episode videos: text drawn onto rendered frames (matplotlib, Agg) and encoding with imageio
(mp4 through imageio-ffmpeg, gif through pillow)."""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pinn_jax import artifacts

__all__ = ["FrameAnnotator", "episode_frames", "text_height", "video_format", "write_video"]

_DPI = 100


def _font_size(height: int) -> float:
    """The annotation's font size in points on frames ``height`` pixels high."""
    return max(5.0, min(11.0, height / 32))


def text_height(height: int, lines: int) -> int:
    """How many pixel rows from the top ``lines`` lines of annotation cover on frames ``height`` pixels high."""
    return int(np.ceil(0.02 * height + (1.2 * lines * _font_size(height) + 4) * _DPI / 72))


class FrameAnnotator:
    """Draws lines of text onto ``(height, width, 3)`` uint8 frames; one reused figure, so it is cheap."""

    def __init__(self, width: int, height: int, fontsize: float | None = None) -> None:
        self.width, self.height = int(width), int(height)
        self.fig = Figure(figsize=(self.width / _DPI, self.height / _DPI), dpi=_DPI)
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        self.image = ax.imshow(np.zeros((self.height, self.width, 3), np.uint8), interpolation="nearest",
                               aspect="auto", extent=(0, self.width, self.height, 0))
        ax.set_xlim(0, self.width)
        ax.set_ylim(self.height, 0)
        size = fontsize if fontsize is not None else _font_size(self.height)
        self.text = ax.text(0.015, 0.98, "", transform=ax.transAxes, ha="left", va="top", family="monospace",
                            fontsize=size, color="black",
                            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 2})

    def __call__(self, frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, expected {self.width}x{self.height}")
        self.image.set_data(frame[..., :3])
        self.text.set_text("\n".join(lines))
        self.canvas.draw()
        out = np.asarray(self.canvas.buffer_rgba())[..., :3]
        # Guard against the canvas rounding the size by a pixel: crop / pad back to the frame size.
        out = out[: self.height, : self.width]
        if out.shape[:2] != (self.height, self.width):
            out = np.pad(out, ((0, self.height - out.shape[0]), (0, self.width - out.shape[1]), (0, 0)), mode="edge")
        return np.ascontiguousarray(out, dtype=np.uint8)


def episode_frames(render_step: Callable[[int], np.ndarray], length: int, actions: np.ndarray, rewards: np.ndarray,
                   *, width: int, height: int, stride: int = 1, header: Sequence[str] = ()) -> list[np.ndarray]:
    """Frames of steps ``0, stride, 2·stride, … < length``.

    ``render_step(t)`` draws the state in which action ``t`` is taken; the text gives the step, that
    action, the reward it earned and the return so far.
    """
    annotate = FrameAnnotator(width, height)
    actions = np.asarray(actions).reshape(len(actions), -1)
    rewards = np.asarray(rewards, float)
    ret = np.cumsum(rewards[:length])
    frames = []
    for t in range(0, int(length), int(stride)):
        act = " ".join(f"{a:+.3f}" for a in actions[t])
        lines = [*header, f"step {t:4d}  action {act}", f"reward {rewards[t]:.3f}  return {ret[t]:.2f}"]
        frames.append(annotate(render_step(t), lines))
    return frames


def video_format(path: str | os.PathLike) -> str:
    """``"mp4"`` or ``"gif"`` from the file name; ValueError for anything else."""
    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    if suffix not in ("mp4", "gif"):
        raise ValueError(f"unsupported video file {str(path)!r}: use a .mp4 or .gif name")
    return suffix


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 30.0) -> pathlib.Path:
    """Encode ``frames`` (uint8, same size) as mp4 (H.264 via imageio-ffmpeg; even sizes) or gif (pillow)."""
    import imageio.v2 as imageio
    import imageio.v3 as iio

    path = pathlib.Path(path)
    fmt = video_format(path)
    if not frames:
        raise ValueError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic(path) as tmp:
        if fmt == "gif":  # encoded in memory: pillow retries a failed write when it is collected, and fails again
            tmp.write_bytes(iio.imwrite("<bytes>", np.stack(frames), extension=".gif", plugin="pillow",
                                        duration=1000.0 / fps, loop=0))
        else:
            # imageio-ffmpeg starts ffmpeg with subprocess (fork + exec at once), which JAX warns about needlessly.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
                                        pixelformat="yuv420p", ffmpeg_log_level="error") as writer:
                    for f in frames:
                        writer.append_data(f)
            if not _has_index(tmp):  # imageio-ffmpeg does not report an ffmpeg that failed (a full disk)
                raise OSError(None, "ffmpeg stopped before the video was complete")
    return path


def _has_index(mp4: pathlib.Path) -> bool:
    """Whether an mp4 file holds its index (the top-level ``moov`` box, which ffmpeg writes last)."""
    data = mp4.read_bytes()
    i = 0
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if kind == b"moov":
            return True
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(data[i + 8:i + 16], "big")
        if size < 8:  # 0: the box runs to the end of the file
            return False
        i += size
    return False
