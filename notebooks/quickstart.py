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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pinn-jax/pinn_jax/blob/main/notebooks/quickstart.ipynb)
#
# # pinn_jax quickstart
#
# `pinn_jax` re-implements *The Sensory Neuron as a Transformer: Permutation-Invariant Neural Networks
# for Reinforcement Learning* (Tang & Ha, NeurIPS 2021) in JAX: a cart-pole swing-up environment, the
# **attention-neuron** policy (913 parameters, indifferent to the order and number of its inputs) and
# evolution strategies that train a whole population in one compiled call.
#
# This notebook: install → look at the environment → train an attention-neuron agent for a few
# generations → plot its fitness curve → watch a rollout. To play with a trained agent live, shuffling its
# senses mid-episode, open the browser demo: `python -m pinn_jax demo out/demo --serve`.

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
# Size of this run. SMALL (the default, what CI executes) takes about a minute on 2 CPU cores and
# learns little; set SMALL = False (or PINN_JAX_NOTEBOOK_SMALL=0) for a run that visibly learns:
# a few minutes on a GPU runtime, longer on CPU.
SMALL = os.environ.get("PINN_JAX_NOTEBOOK_SMALL", "1") == "1"
if SMALL:
    POPULATION, ROLLOUTS, MAX_STEPS, GENERATIONS, LOG_EVERY = 16, 2, 100, 6, 3
else:
    POPULATION, ROLLOUTS, MAX_STEPS, GENERATIONS, LOG_EVERY = 64, 8, 500, 100, 10
print(f"SMALL={SMALL}: population {POPULATION} x {ROLLOUTS} rollouts x {MAX_STEPS} steps, "
      f"{GENERATIONS} generations")

# %%
# %matplotlib inline
import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import pinn_jax
from pinn_jax import config, envs
from pinn_jax.study.episodes import render_episode_video
from pinn_jax.models import load_model
from pinn_jax.policies import count_params, make_policy
from pinn_jax.train import train

print(f"pinn_jax {pinn_jax.__version__}, JAX {jax.__version__} on {jax.default_backend()}: {jax.devices()}")

# %% [markdown]
# ## 1. The environment
#
# `pinn_jax.envs.make` returns a pure, jit/vmap-able [gymnax](https://github.com/RobertTLange/gymnax)
# environment and its parameters. `CartPoleSwingUp-v0` is the paper's *hard* start
# (`CartPoleSwingUpHarder`); `CartPoleSwingUp-easy` starts with the pole hanging straight down.
# The observation has 5 features, the action is one force in [-1, 1]; `envs.render` draws a state.

# %%
env, env_params = envs.make("CartPoleSwingUp-easy")
obs, state = env.reset(jax.random.PRNGKey(0), env_params)
FEATURES = ["x", "x_dot", "cos(theta)", "sin(theta)", "theta_dot"]
for name, value in zip(FEATURES, np.asarray(obs)):
    print(f"{name:>10s} = {value:+.3f}")
print("action space:", env.action_space(env_params).low, "..", env.action_space(env_params).high)

# Push the cart right for 45 steps (gymnax's step is jit-compiled) and draw a frame every 15.
frames, s, key = [state], state, jax.random.PRNGKey(1)
for t in range(45):
    key, k = jax.random.split(key)
    obs, s, reward, terminated, truncated, info = env.step(k, s, jnp.array([1.0]), env_params)
    if (t + 1) % 15 == 0:
        frames.append(s)
fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 2.8))
for i, (ax, st) in enumerate(zip(axes, frames)):
    ax.imshow(envs.render(st, env_params, width=360, height=240))
    ax.set_title(f"step {15 * i}: x = {float(st.x):+.2f}, theta = {float(st.theta):.2f}", fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The attention-neuron policy
#
# Every observation feature goes, together with the previous action, through one *shared* LSTM cell;
# its outputs are the keys of an attention over fixed queries. The parameter count does not depend on
# the number of features, and reordering the features cannot change the action.

# %%
policy = make_policy("attention_neuron")
params = policy.init(jax.random.PRNGKey(0), 5)
print("parameters:", count_params(params))
print(jax.tree.map(jnp.shape, params))

# %% [markdown]
# ## 3. Train with CMA-ES
#
# A config is a validated, frozen dataclass: build it from a dict with `config.from_dict` (or read
# `configs/*.yaml` with `config.load(path, overrides)`). `train` writes the run directory (config,
# orbax checkpoints, `metrics.csv`, TensorBoard events, `params.npz`) and returns the trainer, the
# final state and the logged rows. The same run from a shell:
#
# ```bash
# python -m pinn_jax.train --config configs/quick.yaml --set train.generations=6 --run-dir runs/quick
# ```

# %%
work = pathlib.Path(tempfile.mkdtemp(prefix="pinn_jax_quickstart_"))
cfg = config.from_dict({
    "seed": 0,
    "run_dir": str(work / "run"),
    "env": {"name": "CartPoleSwingUp-v0", "start": "easy", "max_steps": MAX_STEPS},
    "policy": {"name": "attention_neuron"},
    "strategy": {"name": "CMA_ES", "population_size": POPULATION, "sigma_init": 0.1, "init_mean": "zeros"},
    "train": {"generations": GENERATIONS, "rollouts": ROLLOUTS, "log_every": LOG_EVERY,
              "checkpoint_every": GENERATIONS},
})
trainer, state, rows = train(cfg, progress=False)  # the first call compiles the generation loop
print(f"{'gen':>4s} {'best so far':>12s} {'pop mean':>10s} {'pop max':>10s} {'gen/s':>8s}")
for r in rows:
    print(f"{int(r['generation']):4d} {r['best_so_far']:12.2f} {r['fitness_mean']:10.2f} "
          f"{r['fitness_max']:10.2f} {r['gens_per_sec']:8.2f}")
print("run directory:", sorted(p.name for p in pathlib.Path(cfg.run_dir).iterdir()))

# %%
gen = np.array([r["generation"] for r in rows])
col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
fig, ax = plt.subplots(figsize=(7, 4))
ax.fill_between(gen, col("fitness_min"), col("fitness_max"), alpha=0.2, label="population min-max")
ax.plot(gen, col("fitness_mean"), marker="o", label="population mean")
ax.plot(gen, col("best_so_far"), marker="s", label="best so far")
ax.set_xlabel("generation")
ax.set_ylabel(f"fitness (mean return over {ROLLOUTS} episodes)")
ax.set_title(f"CMA-ES on the attention neuron: population {POPULATION}, easy start, {MAX_STEPS} steps")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## 4. Watch a rollout
#
# `evaluate.load_model` reads a run directory's latest checkpoint (the search distribution's mean
# by default). `render_episode_video` films one episode to a GIF or MP4; here the observation is
# **shuffled** (a random feature order for the whole episode), which the attention neuron does not
# notice.

# %%
model = load_model(cfg.run_dir, params="mean", name="attention neuron")
print(model.kind, "policy from", model.source)
gif = render_episode_video(model, work / "rollout.gif", condition="shuffle", env_cfg=cfg.env,
                              steps=MAX_STEPS, stride=2, width=360, height=240, fps=20)
display(Image(filename=str(gif)))

# %%
summary = {
    "backend": jax.default_backend(),
    "num_params": count_params(params),
    "generations": int(rows[-1]["generation"]),
    "final_fitness_mean": float(rows[-1]["fitness_mean"]),
    "final_best_so_far": float(rows[-1]["best_so_far"]),
    "gif": str(gif),
    "gif_bytes": pathlib.Path(gif).stat().st_size,
}
print(json.dumps(summary, indent=1))

# %% [markdown]
# ## Next
#
# * `permutation_invariance.ipynb`: the paper's study (shuffled and noisy observations, attention maps).
# * `benchmark.ipynb`: generations per second and how they scale with the population.
# * Full-size runs: `python -m pinn_jax.train --config configs/cartpole_pi.yaml` (the paper's setting).
