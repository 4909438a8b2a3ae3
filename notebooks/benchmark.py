# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pinn-jax/pinn_jax/blob/main/notebooks/benchmark.ipynb)
#
# # Benchmark: generations per second
#
# One generation of evolution strategies = ask the strategy for a population → run every member for
# a few episodes → tell the strategy the fitness. `pinn_jax.training.trainer.make_trainer` compiles all of it
# (and several generations, folded into a `lax.scan`) into **one** XLA call, so the speed depends only
# on the backend. This notebook times it on whatever JAX runs on here (CPU, or a GPU runtime on Colab:
# *Runtime → Change runtime type*) for several population sizes, and plots the scaling curves.
#
# Cost model: every episode runs its full `max_steps` (finished episodes are frozen, not skipped), so
# a generation is `population × rollouts × max_steps` policy + environment steps, plus the strategy's
# update (CMA-ES keeps a full covariance: its eigendecomposition over the 913 attention-neuron
# parameters is a noticeable share on CPU).

# %%
# Install pinn_jax where it is missing (Colab, a clean venv); where it is installed this does nothing.
import importlib.util
import os
import subprocess
import sys

REPO_URL = "https://github.com/pinn-jax/pinn_jax"
PINN_JAX = f"git+{REPO_URL}"  # what to install: this repository (or your fork), or a path to a pinn_jax wheel
if importlib.util.find_spec("pinn_jax") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PINN_JAX], check=True)

# %%
# Sizes. SMALL (the default, what CI executes): three small populations, short episodes, about a
# minute on 2 CPU cores. SMALL = False (or PINN_JAX_NOTEBOOK_SMALL=0): the paper's protocol
# (16 rollouts of 1000 steps) up to population 512 - meant for a GPU; slow on CPU.
SMALL = os.environ.get("PINN_JAX_NOTEBOOK_SMALL", "1") == "1"
POLICIES = ("attention_neuron", "mlp")
if SMALL:
    POPULATIONS, ROLLOUTS, MAX_STEPS, REPEATS = (8, 16, 32), 2, 100, 3
else:
    POPULATIONS, ROLLOUTS, MAX_STEPS, REPEATS = (16, 32, 64, 128, 256, 512), 16, 1000, 5
print(f"SMALL={SMALL}: populations {POPULATIONS}, {ROLLOUTS} rollouts x {MAX_STEPS} steps, "
      f"median of {REPEATS} timed generations")

# %%
# %matplotlib inline
import json
import pathlib
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np

from pinn_jax.tools import bench

device = jax.devices()[0]
print(f"JAX {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} device(s): "
      f"{getattr(device, 'device_kind', device.platform)}; {os.cpu_count()} CPU cores visible")


# %% [markdown]
# ## Timing one generation
#
# `trainer.run(state, n)` advances `n` generations in one compiled call. `pinn_jax.tools.bench.measure_generation`
# (the same code as `python -m pinn_jax bench`) compiles it first (its time is reported separately), then
# times single generations, waiting for each result (`jax.block_until_ready`), and keeps the median of a few. On a machine shared with other work the
# individual timings can vary a lot: the plots show their range as error bars.

# %%
def time_generation(policy, population, rollouts=ROLLOUTS, max_steps=MAX_STEPS, repeats=REPEATS):
    cfg = bench.make_config(policy, population, rollouts, max_steps)  # the paper's protocol, hard start
    r = bench.measure_generation(cfg, repeats)
    t = r["sec_per_gen"]  # wall seconds of the timed generations: median, min, max, runs
    return {"policy": policy, "num_params": r["num_params"], "population": population, "rollouts": rollouts,
            "max_steps": max_steps, "compile_s": r["compile_s"], "sec_per_gen": t["median"],
            "gens_per_sec": r["gen_per_sec"], "steps_per_sec": r["env_steps_per_sec"], "times": t["runs"]}


results = []
print(f"{'policy':>16s} {'params':>6s} {'pop':>5s} {'compile s':>9s} {'gen/s':>8s} {'env steps/s':>12s}")
for policy in POLICIES:
    for population in POPULATIONS:
        r = time_generation(policy, population)
        results.append(r)
        print(f"{policy:>16s} {r['num_params']:6d} {population:5d} {r['compile_s']:9.1f} "
              f"{r['gens_per_sec']:8.2f} {r['steps_per_sec']:12.3g}")


# %% [markdown]
# ## Scaling curves
#
# Left: generations per second against the population size; right: environment steps per second
# (`population × rollouts × max_steps` per generation). Markers are medians, bars the fastest and the
# slowest timed generation. On a CPU the work grows with the population and the throughput levels
# off once the cores are busy; on a GPU small populations leave it mostly idle, so the throughput
# keeps rising with the population over a wide range.

# %%
def rates(r, sec):  # (generations/s, environment steps/s) of one generation taking `sec` seconds
    return np.array([1.0 / sec, r["population"] * r["rollouts"] * r["max_steps"] / sec])


fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for policy in POLICIES:
    rows = [r for r in results if r["policy"] == policy]
    pops = [r["population"] for r in rows]
    mid = np.array([rates(r, r["sec_per_gen"]) for r in rows])  # (populations, 2)
    lo = np.array([rates(r, max(r["times"])) for r in rows])
    hi = np.array([rates(r, min(r["times"])) for r in rows])
    for k, ax in enumerate(axes):
        ax.errorbar(pops, mid[:, k], yerr=[mid[:, k] - lo[:, k], hi[:, k] - mid[:, k]], marker="o", capsize=3,
                    label=f"{policy} ({rows[0]['num_params']} params)")
for ax, ylabel in zip(axes, ("generations per second", "environment steps per second")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(POPULATIONS, [str(p) for p in POPULATIONS])
    ax.set_xlabel("population size")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
fig.suptitle(f"CMA-ES, {ROLLOUTS} rollouts x {MAX_STEPS} steps per member, on {jax.default_backend()} "
             f"({getattr(device, 'device_kind', device.platform)})", fontsize=10)
fig.tight_layout()
plt.show()

# %%
out = pathlib.Path(tempfile.mkdtemp(prefix="pinn_jax_benchmark_")) / "benchmark.json"
report = {"backend": jax.default_backend(), "device": str(getattr(device, "device_kind", device.platform)),
          "jax": jax.__version__, "small": SMALL, "results": results}
out.write_text(json.dumps(report, indent=1))
summary = {"backend": report["backend"], "device": report["device"], "report": str(out),
           "gens_per_sec": {f"{r['policy']}@{r['population']}": round(r["gens_per_sec"], 3) for r in results}}
print(json.dumps(summary, indent=1))
