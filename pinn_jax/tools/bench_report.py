"""The benchmark's reports: the markdown tables quoted in the README and the scaling figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pinn_jax import artifacts

__all__ = ["markdown", "figure", "plot", "g", "range_text", "times", "load_text", "curve_axes"]


def g(x: float) -> str:
    return f"{x:.3g}"


def range_text(st: dict[str, Any]) -> str:
    return f"{g(st['median'])} ({g(st['min'])}–{g(st['max'])})"


def markdown(report: dict[str, Any]) -> str:
    """The tables quoted in the README."""
    m, s = report["meta"], report["settings"]
    lines = [
        "# pinn_jax benchmark", "",
        f"Device: **{_device_line(m)}**; jax {m['jax']}, jaxlib {m['jaxlib']}, evosax {m['evosax']}"
        + (f"; XLA_FLAGS `{m['xla_flags']}`" if m.get("xla_flags") else "") + ".  ",
        f"Load average (1/5/15 min) at start {load_text(m['loadavg_start'])}, at end {load_text(m['loadavg_end'])}; "
        f"mode `{s['mode']}`, {s['repeats']} timed repetitions after a warm-up (median, min–max); "
        f"whole run {m['wall_s']:.0f} s.", "",
        f"## One generation: population {s['population']} × {s['rollouts']} rollouts × {s['steps']} steps, "
        "CMA-ES, hard start", "",
        "`Trainer.run(state, 1)`: ask → evaluate → tell in one compiled call. Environment steps per generation "
        "= population × rollouts × steps (finished episodes are frozen, not skipped). CPU s = process CPU time "
        "(all threads); ask+tell and evaluation are timed as separate compiled calls.", "",
        "| policy | params | s / generation | generations / s | env steps / s | CPU s / gen | ask + tell s "
        "| evaluation s | compile s | Python loop s / gen (extrapolated) | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["generation"].items():
        b, c = report["baseline"][name], report["compile"][name]
        at = range_text(r["ask_tell_sec"]) if "ask_tell_sec" in r else "–"
        ev = range_text(r["evaluate_sec"]) if "evaluate_sec" in r else "–"
        lines.append(f"| {name} | {r['num_params']} | {range_text(r['sec_per_gen'])} | {g(r['gen_per_sec'])} | "
                     f"{r['env_steps_per_sec']:.3g} | {g(r['cpu_sec_per_gen'])} | {at} | {ev} | {c['total_s']:.1f} | "
                     f"{g(b['extrapolated_sec_per_gen'])} ({b['sec_per_step']['median'] * 1e6:.0f} µs/step) | "
                     f"{times(report['speedup'][name])} |")
    mem = report["memory"]
    lines += ["", f"Peak host RSS: {mem['peak_rss_bytes']['end'] / 2**20:.0f} MiB"
              + (f"; device peak {mem['device']['peak_bytes_in_use'] / 2**20:.0f} MiB"
                 if mem.get("device") and "peak_bytes_in_use" in mem["device"] else "") + ".", ""]
    lines += [f"## Scaling (attention neuron, {s['curve_steps']} steps per episode, {s['curve_repeats']} repetitions)",
              "", (f"Shorter episodes than above ({s['curve_steps']} instead of {s['steps']} steps) keep the grid "
                   "affordable; the cost per step does not depend on the episode length. "
                   if s["curve_steps"] < s["steps"] else "") + "Population and features at "
              f"{s['rollouts']} rollouts; rollouts and features at population {s['population']}; "
              "features beyond the 5 observations are noise features.", ""]
    titles = {"population": "population", "rollouts": "rollouts", "features": "features"}
    for axis, rows in report["scaling"].items():
        lines += [f"| {titles[axis]} | s / generation | env steps / s | CPU s / gen |", "|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['value']} | {range_text(r['sec_per_gen'])} | {r['env_steps_per_sec']:.3g} | "
                         f"{g(r['cpu_sec_per_gen'])} |")
        lines.append("")
    return "\n".join(lines)


def _device_line(m: dict[str, Any]) -> str:
    cpu = f"{m['cpu_model']}, {m['cpu_affinity']} cores"
    if m["backend"] == "cpu":
        return f"CPU ({cpu})"
    return f"{m['backend'].upper()} {m['device']} x {m['device_count']} (host: {cpu})"


def times(x: float) -> str:
    return f"×{x:,.0f}" if x >= 10 else f"×{x:.2g}"


def load_text(avg: Sequence[float] | None) -> str:
    """A load average (1/5/15 min) as ``2.10/1.95/1.80``."""
    return "n/a" if avg is None else "/".join(f"{x:.2f}" for x in avg)


def curve_axes(report: dict[str, Any]) -> list[str]:
    """The scaling axes measured at two values or more: those that make a curve (the others are in the tables)."""
    return [axis for axis, rows in report["scaling"].items() if len(rows) >= 2]


def figure(report: dict[str, Any]) -> Figure:
    """Seconds per generation against population, rollouts and features (log-log, min–max bars): one panel per
    axis of :func:`curve_axes`."""
    s, m = report["settings"], report["meta"]
    shown = curve_axes(report) or list(report["scaling"])[:1]  # a grid of single points: its first, alone
    fig = Figure(figsize=(14 * len(shown) / 3 + 1, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    labels = {"population": "population size", "rollouts": "rollouts per member",
              "features": "observation features (5 + noise)"}
    for ax, axis in zip(axes, shown):
        rows = report["scaling"][axis]
        x = np.array([r["value"] for r in rows], float)
        med = np.array([r["sec_per_gen"]["median"] for r in rows])
        lo = med - np.array([r["sec_per_gen"]["min"] for r in rows])
        hi = np.array([r["sec_per_gen"]["max"] for r in rows]) - med
        ax.errorbar(x, med, yerr=[lo, hi], marker="o", capsize=3, label="measured")
        ax.plot(x, med[0] * x / x[0], ls="--", color="grey", lw=1, label="linear in x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.set_xlabel(labels[axis])
        ax.set_ylabel("seconds per generation")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"attention neuron, CMA-ES, {s['curve_steps']} steps per episode — {_device_line(m)}, "
                 f"load {load_text(m['loadavg_start'])}", fontsize=10)
    fig.tight_layout()
    return fig


def plot(report: dict[str, Any], path: Path) -> None:
    """Write :func:`figure` to ``path``."""
    with artifacts.atomic(path) as tmp:
        FigureCanvasAgg(figure(report)).print_figure(str(tmp), dpi=110)
