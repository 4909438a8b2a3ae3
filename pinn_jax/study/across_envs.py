"""The permutation-invariance study across environments: in each env, the attention neuron against the MLP,
unshuffled, shuffled once per episode, reshuffled every 50 steps and with 5 noise features.

    python -m pinn_jax study --episodes 200 --seed 0 --out out/study          # the shipped agents
    python -m pinn_jax study pretrained:cartpole_v1_pi runs/my_mlp --out out/study

Models are grouped by the env setting they were trained on (name, start, episode length) and each group is
evaluated by :func:`pinn_jax.study.evaluate.evaluate` on the same episodes (paired). Writes ``study.json`` (every
report), ``study.md`` (mean ± standard error per env, model and condition) and ``study.png``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pinn_jax import artifacts
from pinn_jax.envs import label
from pinn_jax.errors import ArgumentParser, cli, int_range, uint32
from pinn_jax.models import Model, load_model
from pinn_jax.study.conditions import ACROSS_ENVS, DEFAULT_EPISODES, parse_condition
from pinn_jax.study.evaluate import check_memory, evaluate
from pinn_jax.study.plots import error_bars
from pinn_jax.training.progress import Tracker

__all__ = ["DEFAULT_MODELS", "study", "markdown", "plot", "main"]

DEFAULT_MODELS = tuple(f"pretrained:{n}" for n in (
    "cartpole_pi_catch", "cartpole_mlp", "cartpole_v1_pi", "cartpole_v1_mlp", "acrobot_pi", "acrobot_mlp",
    "pendulum_pi", "pendulum_mlp", "mountaincar_continuous_pi", "mountaincar_continuous_mlp", "mountaincar_pi",
    "mountaincar_mlp"))


def study(models: Sequence[Model], episodes: int = DEFAULT_EPISODES, seed: int = 0,
          conditions: Sequence[str] = ACROSS_ENVS, log: Callable[[str], None] | None = None,
          tick: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """``{env label: evaluate report}``, one report per env setting the models were trained on."""
    groups: dict[Any, list[Model]] = {}
    for m in models:
        groups.setdefault((m.env_cfg.name, m.env_cfg.start, m.env_cfg.max_steps), []).append(m)
    conds = [parse_condition(c) for c in conditions]
    return {label(*key): evaluate(group, conds, episodes, seed, group[0].env_cfg, log=log, tick=tick)
            for key, group in groups.items()}


def _cell(cell: dict[str, Any]) -> str:
    return "n/a" if cell["status"] != "ok" else f"{cell['mean']:.1f} ± {cell['sem']:.1f}"


def markdown(result: dict[str, dict[str, Any]]) -> str:
    """One row per env and model: mean ± standard error of the return in each condition."""
    first = next(iter(result.values()))
    conds = first["meta"]["conditions"]
    lines = ["| env | model | policy | " + " | ".join(c["label"] for c in conds) + " |",
             "|---|---|---|" + "---:|" * len(conds)]
    for env, report in result.items():
        kinds = {m["name"]: m["kind"] for m in report["meta"]["models"]}
        for model, cells in report["results"].items():
            lines.append(f"| {env} | `{model}` | {kinds[model]} | "
                         + " | ".join(_cell(cells[c["name"]]) for c in conds) + " |")
    meta = first["meta"]
    lines += ["", f"Mean ± standard error of the return over {meta['episodes']} episodes per cell (seed "
              f"{meta['seed']}, the same episodes for every model and condition of an env). n/a: the MLP takes a "
              f"fixed number of features, so it cannot take noise features."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, dict[str, Any]], path: Any) -> Any:
    """One panel per env: a bar per model and condition (mean ± standard error)."""
    n = len(result)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for ax, (env, report) in zip(axes, result.items()):
        conds = report["meta"]["conditions"]
        models = list(report["results"])
        width = 0.8 / len(conds)
        for j, c in enumerate(conds):
            for i, m in enumerate(models):
                cell = report["results"][m][c["name"]]
                x = i + (j - (len(conds) - 1) / 2) * width
                if cell["status"] != "ok":
                    ax.text(x, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, rotation=90)
                    continue
                ax.bar(x, cell["mean"], width * 0.9, yerr=error_bars([cell]), color=colors[j % len(colors)], capsize=2,
                       label=c["label"] if i == 0 else None)
        ax.set_xticks(range(len(models)), [m.removeprefix("pretrained:") for m in models], fontsize=8)
        ax.set_title(env, fontsize=9)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[n:]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    fig.suptitle("Attention neuron vs MLP across environments: mean return ± s.e. with shuffled and noisy "
                 "observations", fontsize=10)
    fig.tight_layout()
    with artifacts.atomic(path) as tmp:
        FigureCanvasAgg(fig).print_figure(str(tmp), dpi=100)
    return path


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax study", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", metavar="MODEL", help="models to compare (default: the shipped agents "
                   "of every env)")
    p.add_argument("--episodes", type=int_range(2, what="a standard error needs two"), default=DEFAULT_EPISODES,
                   help="episodes per model and condition")
    p.add_argument("--seed", type=uint32, default=0, help="seed of the episode keys")
    p.add_argument("--conditions", nargs="+", default=list(ACROSS_ENVS), metavar="NAME", help="conditions")
    p.add_argument("--out", default="out/study", metavar="DIR", help="write study.json, study.md, study.png here")
    p.add_argument("--force", action="store_true",
                   help="replace the study's files in --out (else they are refused before anything runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every 30 s instead")
    args = p.parse_args(argv)
    out = artifacts.output_dir(args.out, "--out", artifacts.STUDY_FILES, args.force)
    models = [load_model(spec) for spec in (args.models or DEFAULT_MODELS)]
    check_memory(models, [parse_condition(c) for c in args.conditions], args.episodes)
    with Tracker(len(models) * len(args.conditions), "study", bar=not args.no_progress) as bar:
        result = study(models, args.episodes, args.seed, args.conditions, log=bar.log,
                       tick=lambda cell: bar.advance(1, cell))
    json_path, md_path, png_path = out / artifacts.STUDY_JSON, out / artifacts.STUDY_MD, out / artifacts.STUDY_PNG
    artifacts.write_text(json_path, json.dumps(result, indent=1))
    artifacts.write_text(md_path, markdown(result))
    plot(result, png_path)
    print(markdown(result))
    print(f"wrote {json_path}, {md_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
