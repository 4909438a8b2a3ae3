"""Figures of an evaluation report (see :func:`pinn_jax.study.evaluate.evaluate`) and of attention weights.

Every function draws on its own ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state,
no GUI backend), saves a PNG of exactly ``figsize * dpi`` pixels and returns the path.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pinn_jax import artifacts
from pinn_jax.envs import label

__all__ = ["plot_curves", "plot_returns", "plot_noise", "plot_shuffle_period", "plot_occlusion",
           "plot_attention_weights", "plot_frame_attention", "noise_conditions", "period_conditions",
           "occlusion_conditions"]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic(path) as tmp:
        fig.savefig(tmp, format="png")  # no bbox_inches="tight": the size stays figsize * dpi
    return path


def _model_label(name: str, width: int) -> str:
    """A model's tick label: without the ``pretrained:`` prefix, broken into lines after ``_`` or ``/``."""
    name = name.removeprefix("pretrained:")
    lines = [""]
    for token in re.split(r"(?<=[_/])", name):
        if lines[-1] and len(lines[-1]) + len(token) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(lines)


def _subtitle(report: dict[str, Any]) -> str:
    m = report["meta"]
    env = m["env"]
    return (f"{m['episodes']} episodes per condition, {label(env['name'], env['start'], env['max_steps'])}, "
            f"seed {m['seed']}")


def _cell(report: dict[str, Any], model: str, cond: str) -> dict[str, Any]:
    return report["results"][model][cond]


def _na_reason(report: dict[str, Any], model: str, conds: Sequence[dict]) -> str | None:
    """The reason if ``model`` is n/a in every one of ``conds``."""
    cells = [_cell(report, model, c["name"]) for c in conds]
    if cells and all(c["status"] != "ok" for c in cells):
        return cells[0]["reason"].split(" (")[0]
    return None


def noise_conditions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Conditions of the noise series (shuffled once per episode, any number of noise features) when
    at least one has noise features, sorted by the number of noise features."""
    conds = [c for c in report["meta"]["conditions"] if c["shuffle"] and not c["shuffle_every"] and not c["occlude"]]
    if not any(c["num_noise"] for c in conds):
        return []
    return sorted(conds, key=lambda c: c["num_noise"])


def period_conditions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Conditions without noise or occlusion ordered by how rarely they shuffle: never, once, every k (large k
    first)."""
    conds = [c for c in report["meta"]["conditions"] if not c["num_noise"] and not c["occlude"]]
    order = lambda c: (0, 0) if not c["shuffle"] else (1, 0) if not c["shuffle_every"] else (2, -c["shuffle_every"])  # noqa: E731
    return sorted(conds, key=order)


def occlusion_conditions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The occlusion series (shuffled once per episode, no noise, any occluded fraction) when at least one
    condition occludes, sorted by the fraction (the ``shuffle`` condition is its 0)."""
    conds = [c for c in report["meta"]["conditions"] if c["shuffle"] and not c["shuffle_every"] and not c["num_noise"]]
    if not any(c["occlude"] for c in conds):
        return []
    return sorted(conds, key=lambda c: c["occlude"])


def _period_label(c: dict[str, Any]) -> str:
    if not c["shuffle"]:
        return "never"
    if not c["shuffle_every"]:
        return "once per\nepisode"
    return f"every\n{c['shuffle_every']} steps"


def plot_returns(report: dict[str, Any], path: str | os.PathLike, conditions: Sequence[str] | None = None,
                 figsize: tuple[float, float] = (10.0, 5.5), dpi: int = 100) -> pathlib.Path:
    """Box plot (with the episodes as dots) of the return of every model side by side, one box per
    condition (default: the conditions without noise, occlusion or periodic shuffling, i.e. no shuffle and
    shuffle once per episode). Cells that are n/a are marked as such."""
    meta_conds = report["meta"]["conditions"]
    if conditions is None:
        conds = [c for c in meta_conds if not (c["num_noise"] or c["shuffle_every"] or c["occlude"])]
        conds = conds or list(meta_conds)
    else:
        by_name = {c["name"]: c for c in meta_conds}
        missing = [n for n in conditions if n not in by_name]
        if missing:
            raise ValueError(f"conditions not in the report: {missing}")
        conds = [by_name[n] for n in conditions]
    models = list(report["results"])
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    nc = len(conds)
    w = 0.8 / nc
    rng = np.random.default_rng(0)
    for j, c in enumerate(conds):
        color = _COLORS[j % len(_COLORS)]
        for i, m in enumerate(models):
            pos = i + (j - (nc - 1) / 2) * w
            data = report["returns"][m][c["name"]]
            if data is None:
                ax.text(pos, 0.5, "n/a", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, color="0.4", fontsize=9)
                continue
            data = np.asarray(data, float)
            ax.boxplot([data], positions=[pos], widths=w * 0.8, patch_artist=True, showfliers=False,
                       medianprops={"color": "black"},
                       boxprops={"facecolor": color, "alpha": 0.45, "edgecolor": color},
                       whiskerprops={"color": color}, capprops={"color": color})
            jitter = rng.uniform(-w * 0.25, w * 0.25, data.size)
            ax.scatter(pos + jitter, data, s=6, color=color, alpha=0.6, linewidths=0, zorder=3)
            ax.scatter([pos], [data.mean()], marker="D", s=24, color="white", edgecolors="black", zorder=4)
    ax.set_xticks(range(len(models)), [_model_label(m, max(8, 120 // max(len(models), 1))) for m in models],
                  fontsize=9 if len(models) > 6 else None)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_xlabel("model")
    ax.set_ylabel("episode return")
    ax.set_title("Return per model with and without shuffled observations\n" + _subtitle(report), fontsize=10)
    handles = [Patch(facecolor=_COLORS[j % len(_COLORS)], alpha=0.45, label=c["label"]) for j, c in enumerate(conds)]
    handles.append(Line2D([], [], marker="D", color="white", markeredgecolor="black", linestyle="", label="mean"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def error_bars(cells: Sequence[dict[str, Any]]) -> np.ndarray:
    """``yerr`` (2 × n: below, above) of cells' means: the standard error, cut at the lowest and highest return
    seen, so that no bar reaches a return the episodes never had (a bar below a swing-up's 0, above CartPole's 500)."""
    sem = np.nan_to_num([c["sem"] for c in cells])  # one episode: no standard error, no bar
    below = np.minimum(sem, [c["mean"] - c["min"] for c in cells])
    above = np.minimum(sem, [c["max"] - c["mean"] for c in cells])
    return np.array([below, above]).clip(min=0.0)


def _series_plot(report: dict[str, Any], conds: Sequence[dict], xs: Sequence[float], ax: Any) -> None:
    """Mean ± s.e. per model over ``conds`` at ``xs`` (models slightly offset so bars stay apart)."""
    models = list(report["results"])
    span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
    for i, m in enumerate(models):
        color = _COLORS[i % len(_COLORS)]
        reason = _na_reason(report, m, conds)
        if reason is not None:
            ax.plot([], [], color=color, marker="o", linestyle="--", label=f"{m} (n/a: {reason})")
            continue
        off = (i - (len(models) - 1) / 2) * 0.012 * span
        pts = [(x + off, _cell(report, m, c["name"])) for x, c in zip(xs, conds)
               if _cell(report, m, c["name"])["status"] == "ok"]
        x = [p[0] for p in pts]
        mean = [p[1]["mean"] for p in pts]
        ax.errorbar(x, mean, yerr=error_bars([p[1] for p in pts]), color=color, marker="o", capsize=4,
                    linewidth=1.5, label=m)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _series_figure(report: dict[str, Any], conds: Sequence[dict], xs: Sequence[float], ticks: Sequence[str] | None,
                   xlabel: str, title: str, path: str | os.PathLike, figsize: tuple[float, float], dpi: int
                   ) -> pathlib.Path:
    """One figure of :func:`_series_plot` over ``conds`` at ``xs`` (tick labels ``ticks``, else the values)."""
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    _series_plot(report, conds, xs, ax)
    ax.set_xticks(xs, ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("episode return (mean ± s.e.)")
    ax.set_title(f"{title}\n" + _subtitle(report), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_noise(report: dict[str, Any], path: str | os.PathLike,
               figsize: tuple[float, float] = (8.0, 5.0), dpi: int = 100) -> pathlib.Path:
    """Mean return (± s.e.) against the number of noise features appended to the
    shuffled observation, one line per model."""
    conds = noise_conditions(report)
    if not conds:
        raise ValueError("the report has no noise conditions (shuffled, with noise features)")
    return _series_figure(report, conds, [c["num_noise"] for c in conds], None,
                          "number of noise features appended (observation shuffled once per episode)",
                          "Return vs number of noise features", path, figsize, dpi)


def plot_shuffle_period(report: dict[str, Any], path: str | os.PathLike,
                        figsize: tuple[float, float] = (8.0, 5.0), dpi: int = 100) -> pathlib.Path:
    """Mean return (± s.e.) against how often the observation is re-permuted during the episode:
    never, once per episode, every k steps (rarer to more frequent), one line per model."""
    conds = period_conditions(report)
    if not conds:
        raise ValueError("the report has no conditions without noise features")
    return _series_figure(report, conds, list(range(len(conds))), [_period_label(c) for c in conds],
                          "shuffle period (how often the features, or an image's patches, are re-permuted)",
                          "Return vs shuffle period", path, figsize, dpi)


def plot_occlusion(report: dict[str, Any], path: str | os.PathLike,
                   figsize: tuple[float, float] = (8.0, 5.0), dpi: int = 100) -> pathlib.Path:
    """Mean return (± s.e.) against the fraction of an image's patches occluded (the rest shuffled once per
    episode), one line per model."""
    conds = occlusion_conditions(report)
    if not conds:
        raise ValueError("the report has no occlusion conditions")
    xs = [c["occlude"] for c in conds]
    return _series_figure(report, conds, xs, [f"{x:.0%}" for x in xs],
                          "fraction of the patches occluded (a random set per episode; the rest shuffled once per "
                          "episode)", "Return vs occluded patches", path, figsize, dpi)


def unshuffle(values: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Reorder the last axis from observation positions to original features.

    ``values[t, ..., j]`` belongs to observation position ``j`` at step ``t``, which holds original
    feature ``perm[t, j]``; the result has original feature ``i`` at index ``i``.
    """
    values, perm = np.asarray(values), np.asarray(perm)
    inv = np.argsort(perm, axis=-1)  # inv[t, i] = position of feature i
    idx = inv.reshape(inv.shape[:1] + (1,) * (values.ndim - 2) + inv.shape[1:])
    return np.take_along_axis(values, np.broadcast_to(idx, values.shape), axis=-1)


def plot_attention_weights(attention: np.ndarray, perm: np.ndarray, path: str | os.PathLike,
                           feature_names: Sequence[str], title: str = "Attention weights", time_points: int = 4,
                           n_real: int | None = None, figsize: tuple[float, float] = (12.0, 7.0),
                           dpi: int = 100) -> pathlib.Path:
    """Attention of one episode: ``attention`` (T, slots, n) and ``perm`` (T, n) as recorded.

    Top: the slots × features matrix at ``time_points`` evenly spaced steps. Bottom: every feature's
    attention averaged over the slots, over time (steps where the permutation changes are marked).
    Features are shown in their original order (the shuffle undone).
    """
    attn = unshuffle(np.asarray(attention, float), perm)
    t_len, slots, n = attn.shape
    if t_len == 0:
        raise ValueError("empty episode: nothing to plot")
    names = list(feature_names)
    n_real = n_real if n_real is not None else sum(not s.startswith("noise") for s in names)
    k = max(1, min(time_points, t_len))
    steps = sorted(set(np.linspace(0, t_len - 1, k).round().astype(int).tolist()))
    fig = _figure(figsize, dpi)
    gs = fig.add_gridspec(2, len(steps) + 1, height_ratios=(1.2, 1.0), width_ratios=[1] * len(steps) + [0.05])
    im = None
    for i, t in enumerate(steps):
        ax = fig.add_subplot(gs[0, i])
        im = ax.imshow(attn[t], vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto", interpolation="nearest")
        ax.set_title(f"step {t}", fontsize=9)
        ax.set_xticks(range(n), names if n <= 12 else [s if j < n_real else "" for j, s in enumerate(names)],
                      rotation=90, fontsize=7)
        if i == 0:
            ax.set_ylabel(f"latent slot (of {slots})", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        else:
            ax.set_yticks([])
    cax = fig.add_subplot(gs[0, -1])
    fig.colorbar(im, cax=cax, label="attention weight")
    ax = fig.add_subplot(gs[1, :-1])
    mean = attn.mean(axis=1)  # (T, n)
    ts = np.arange(t_len)
    for j in range(n):
        if j < n_real:
            ax.plot(ts, mean[:, j], color=_COLORS[j % len(_COLORS)], linewidth=1.4, label=names[j])
        else:
            ax.plot(ts, mean[:, j], color="0.6", linewidth=0.7, alpha=0.6,
                    label="noise features" if j == n_real else None)
    changes = np.nonzero(np.any(np.diff(np.asarray(perm), axis=0) != 0, axis=-1))[0] + 1
    for c in changes:
        ax.axvline(c, color="black", linestyle=":", linewidth=0.8)
    for t in steps:
        ax.axvline(t, color="0.3", linewidth=0.5, alpha=0.4)
    ax.set_xlim(0, max(t_len - 1, 1))
    ax.set_xlabel("time step" + (" (dotted: features re-shuffled)" if len(changes) else ""))
    ax.set_ylabel(f"mean attention over {slots} slots")
    ax.legend(fontsize=7, ncol=min(n_real + 1, 6), loc="upper right")
    ax.grid(alpha=0.3)
    fig.suptitle(title + "\nfeatures in their original order (shuffling undone)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_frame_attention(frames: np.ndarray, maps: np.ndarray, titles: Sequence[str], path: str | os.PathLike,
                         title: str = "Attention over the frame", queries: int | None = None,
                         dpi: int = 100) -> pathlib.Path:
    """Panels of a vision policy's attention drawn over the frame: ``frames`` (K, H, W, 3) uint8 pictures of the
    true frames, ``maps`` (K, rows, columns) the attention each patch of the grid received (summed over the
    ``queries``), each spread over its patch's pixels on one colour scale; one panel per ``titles`` entry."""
    frames, maps = np.asarray(frames), np.asarray(maps, float)
    k, h, w = frames.shape[:3]
    fig = _figure((3.0 * k + 1.0, 3.9), dpi)
    gs = fig.add_gridspec(1, k + 1, width_ratios=[1] * k + [0.06])
    im = None
    for i in range(k):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(frames[i], extent=(0, w, h, 0), interpolation="nearest")
        im = ax.imshow(maps[i], extent=(0, w, h, 0), interpolation="nearest", cmap="magma", alpha=0.6, vmin=0.0,
                       vmax=max(float(maps.max()), 1e-9))
        ax.set_title(titles[i], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    what = f"summed over {queries} queries" if queries else "summed over the queries"
    fig.colorbar(im, cax=fig.add_subplot(gs[0, -1]), label=f"attention per patch ({what})")
    fig.suptitle(title + "\npatches in their places in the frame (shuffling undone)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(curves: Sequence[Any], path: str | os.PathLike, target: float | None = None,
                paper_generations: int | None = None, hours_budget: float | None = None,
                figsize: tuple[float, float] = (11, 4), dpi: int = 110) -> pathlib.Path:
    """Held-out return against generations (left) and wall-clock hours (right), one line per
    :class:`pinn_jax.study.curves.Curve`; an open circle on a staged run's line where its next stage starts, the
    target and the budgets dashed, the legend below both panels."""
    legend_h = 0.17 * -(-len(curves) // 3)  # inches: a row of three labels per three curves
    fig = _figure((figsize[0], figsize[1] + legend_h), dpi)
    a, b = fig.subplots(1, 2, sharey=True)
    for i, c in enumerate(curves):
        color, ls = _COLORS[i % len(_COLORS)], ("-", "--")[i // len(_COLORS) % 2]  # dashed past the palette
        a.plot(c.generation, c.held_out, label=c.label, lw=1.3, color=color, ls=ls)
        b.plot(np.asarray(c.seconds) / 3600, c.held_out, lw=1.3, color=color, ls=ls)
        drawn = [g for g in c.stages if len(c.generation) and g >= c.generation[0]]  # not where no line is
        if drawn:
            a.plot(drawn, np.interp(drawn, c.generation, c.held_out), "o", ms=5, mfc="none", color=color)
    if target is not None:
        for ax in (a, b):
            ax.axhline(target, color="k", ls="--", lw=0.9)
        a.annotate(f"target {target:g}", (0.01, target), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    for ax, x, text in ((a, paper_generations, "paper's budget"), (b, hours_budget, f"{hours_budget} h")):
        if x:
            ax.axvline(x, color="grey", ls="-.", lw=0.9)
            ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=8)
    a.set_xlabel("generation")
    b.set_xlabel("wall-clock hours on this machine")
    a.set_ylabel("held-out return of the search mean")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.legend(*a.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_h / (figsize[1] + legend_h), 1, 1))
    return _save(fig, path)
