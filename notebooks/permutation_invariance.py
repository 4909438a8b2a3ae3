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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pinn-jax/pinn_jax/blob/main/notebooks/permutation_invariance.ipynb)
#
# # Permutation invariance: the study
#
# The attention neuron sees its observation as an unordered *set* of features. This notebook loads a
# trained agent and checks what that buys:
#
# 1. its return is the same with shuffled observations, while an MLP's drops, and it tolerates
#    extra noise features an MLP cannot even take;
# 2. its action does not change when the features are shuffled (up to float rounding);
# 3. where it attends, shown as a heatmap;
# 4. it accepts any number of features; the MLP raises a `ValueError`.
#
# The agent is the model shipped with the package when there is one (`pinn_jax.models.pretrained`), else the
# authors' released weights when their file is present (a repository checkout beside
# `../shared/reference`), else one trained here for a few generations.

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
# Size of the study. SMALL (the default, what CI executes) runs 8 episodes per condition and a few
# conditions: about a minute on 2 CPU cores. SMALL = False (or PINN_JAX_NOTEBOOK_SMALL=0) runs the
# paper-style study (100 episodes, all shuffle periods and noise levels): minutes on CPU.
SMALL = os.environ.get("PINN_JAX_NOTEBOOK_SMALL", "1") == "1"
if SMALL:
    EPISODES, SHUFFLE_EVERY, NOISE = 8, (50,), (0, 5, 10)
    TRAIN = {"population": 16, "rollouts": 2, "max_steps": 200, "generations": 4}  # only if nothing is shipped
else:
    EPISODES, SHUFFLE_EVERY, NOISE = 100, (50, 100, 250), (0, 5, 10, 15, 20, 30)
    TRAIN = {"population": 64, "rollouts": 8, "max_steps": 1000, "generations": 200}
print(f"SMALL={SMALL}: {EPISODES} episodes per condition, shuffle every {SHUFFLE_EVERY}, noise {NOISE}")

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

from pinn_jax import config
from pinn_jax.study import evaluate as ev
from pinn_jax.study.conditions import default_conditions
from pinn_jax.study.episodes import plot_attention, record_episode
from pinn_jax.errors import ModelError
from pinn_jax.models import load_model
from pinn_jax.policies import count_params
from pinn_jax.train import train

work = pathlib.Path(tempfile.mkdtemp(prefix="pinn_jax_permutation_"))
print(f"JAX {jax.__version__} on {jax.default_backend()}; outputs go to {work}")

# %% [markdown]
# ## Load the agents
#
# `models.load_model` takes `"pretrained:NAME"`, `"official"` or a run directory (its latest
# checkpoint). For the comparison we also need an MLP: the shipped one, or a 5 → 16 → 16 → 1 MLP
# trained here for a few generations (barely trained then: its point below is its fixed input size).

# %%
from pinn_jax.models import pretrained

SHIPPED = pretrained.available()


def shipped(kind, preferred):
    """A shipped model of this policy kind (``preferred`` first), or None."""
    for name in sorted(SHIPPED, key=lambda n: n != preferred):
        if pretrained.info(name)["config"]["policy"]["name"] == kind:
            return name
    return None


def train_small(kind, name, hidden=(16, 16)):
    """Train a small agent of this policy kind here (hard start, as the paper's agents)."""
    run_dir = work / f"train_{kind}"
    cfg = config.from_dict({
        "seed": 0, "run_dir": str(run_dir),
        "env": {"name": "CartPoleSwingUp-v0", "start": "hard", "max_steps": TRAIN["max_steps"]},
        "policy": {"name": kind, "hidden": list(hidden)},
        "strategy": {"name": "CMA_ES", "population_size": TRAIN["population"], "sigma_init": 0.1},
        "train": {"generations": TRAIN["generations"], "rollouts": TRAIN["rollouts"],
                  "log_every": TRAIN["generations"], "checkpoint_every": TRAIN["generations"]},
    })
    _, _, rows = train(cfg, progress=False)
    print(f"trained {kind} for {TRAIN['generations']} generations: best fitness {rows[-1]['best_so_far']:.1f}")
    return load_model(str(run_dir), params="mean", name=name)


name = shipped("attention_neuron", "cartpole_pi_catch")
if name:
    pi, PI_SOURCE = load_model(f"pretrained:{name}", name="attention neuron"), f"shipped model {name!r}"
else:
    try:  # the authors' weights, if fetched (python -m pinn_jax pretrained fetch-official)
        pi, PI_SOURCE = load_model("official", name="attention neuron"), "the authors' released weights"
    except ModelError:
        pi, PI_SOURCE = train_small("attention_neuron", "attention neuron"), "trained in this notebook"

name = shipped("mlp", "cartpole_mlp")
if name:
    mlp, MLP_SOURCE = load_model(f"pretrained:{name}", name="MLP"), f"shipped model {name!r}"
else:
    mlp, MLP_SOURCE = train_small("mlp", "MLP"), "trained in this notebook"

EVAL_ENV = pi.env_cfg  # evaluate where the attention neuron was trained
for m, src in ((pi, PI_SOURCE), (mlp, MLP_SOURCE)):
    print(f"{m.name}: {m.kind}, {count_params(m.params)} parameters, input size {m.input_size or 'any'}, "
          f"{src} ({m.source})")
print(f"evaluation env: {EVAL_ENV}")

# %% [markdown]
# ## 1. Returns under shuffling and noise
#
# `evaluate` runs every model in every condition on the same episode keys (a paired comparison: the
# same start states, permutations and noise for every model): no shuffle, shuffled once per episode,
# re-shuffled every *k* steps, and *N* Gaussian noise features appended (then shuffled). Cells a
# fixed-input model cannot run are `n/a`. The hard start is harsh: many episodes are lost in the first
# steps whatever the policy does, hence the large spread (the paper reports 472 ± 426).

# %%
conditions = default_conditions(shuffle_every=SHUFFLE_EVERY, noise=NOISE)
print("conditions:", [c.name for c in conditions])
report = ev.evaluate([pi, mlp], conditions, episodes=EPISODES, seed=0, env_cfg=EVAL_ENV, log=print)
print()
print(ev.format_table(report))
ev.save_report(report, work / "study")  # report.json (with every episode's return) and report.csv
means = {m: {c: cell["mean"] for c, cell in cells.items()} for m, cells in report["results"].items()}
for m in (pi.name, mlp.name):
    print(f"{m}: mean return unshuffled {means[m]['no_shuffle']:.1f}, shuffled {means[m]['shuffle']:.1f}")

# %%
figures = ev.write_plots(report, work / "study", log=print)
for path in figures:
    print(path.name)
    display(Image(filename=str(path)))

# %% [markdown]
# ## 2. Same episode, shuffled features, same action
#
# `record_episode` replays episode *i* of the study (here the attention neuron's best one): the same
# start state whatever the condition, so the unshuffled and shuffled runs begin from identical physics
# and differ only in the order of the features. The attention neuron's actions are the same step after
# step; they can drift apart only late, through float rounding (the sum over features runs in another
# order), which the chaotic swing-up dynamics amplify. The MLP reads its inputs by position: its first
# actions may coincide while it pushes at full force (saturated at ±1 from the hanging start), but they
# part after a few steps, and its shuffled episode goes another way.

# %%
EPISODE = int(np.argmax(report["returns"][pi.name]["no_shuffle"]))
STEPS = min(300, EVAL_ENV.max_steps)
recs = {(m.name, c): record_episode(m, c, EVAL_ENV, seed=0, episode_index=EPISODE, steps=STEPS)
        for m in (pi, mlp) for c in ("no_shuffle", "shuffle")}
plain, shuf = recs[pi.name, "no_shuffle"], recs[pi.name, "shuffle"]
print(f"episode {EPISODE}, step-0 observation unshuffled:", np.round(plain.trajectory["obs"][0], 3))
print(f"episode {EPISODE}, step-0 observation shuffled:  ", np.round(shuf.trajectory["obs"][0], 3),
      " feature order", shuf.trajectory["env_state"].transform.perm[0])
first = {}
for m in (pi, mlp):
    a = recs[m.name, "no_shuffle"].trajectory["action"][:, 0]
    b = recs[m.name, "shuffle"].trajectory["action"][:, 0]
    n = min(recs[m.name, "no_shuffle"].length, recs[m.name, "shuffle"].length)
    same = int(np.argmax(np.abs(a[:n] - b[:n]) > 1e-4)) if np.any(np.abs(a[:n] - b[:n]) > 1e-4) else n
    first[m.name] = {"unshuffled": float(a[0]), "shuffled": float(b[0]), "abs_diff": float(abs(a[0] - b[0])),
                     "steps_equal": same, "steps": n}
    print(f"{m.name:>16s} first action: unshuffled {a[0]:+.6f}  shuffled {b[0]:+.6f}  "
          f"|difference| {abs(a[0] - b[0]):.1e}; equal (to 1e-4) for the first {same} of {n} steps")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True)
for ax, m in zip(axes, (pi, mlp)):
    for c, style in (("no_shuffle", "-"), ("shuffle", "--")):
        r = recs[m.name, c]
        ax.plot(r.trajectory["action"][: r.length, 0], style, label=f"{c} (return {r.ret:.1f})")
    ax.set_title(f"{m.name}: action, episode {EPISODE}, first {STEPS} steps")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("action")
plt.show()

# %% [markdown]
# ## 3. Where the attention goes
#
# The attention matrix (16 latent slots × features) at a few steps of the same episode, now with
# 5 noise features appended and everything shuffled; columns are put back in the original feature
# order. The bottom panel is each feature's attention averaged over the slots, over time.

# %%
attention_png = plot_attention(pi, work / "attention.png", "noise_5", EVAL_ENV, seed=0,
                                  episode_index=EPISODE, steps=STEPS)
display(Image(filename=str(attention_png)))

# %% [markdown]
# ## 4. Any number of features
#
# The same 913 parameters act on 1, 3, 5, 12 or 40 features: the LSTM is shared by all features and
# the attention has one column per feature. The MLP's first layer has exactly 5 inputs, so anything
# else is refused with a `ValueError`.

# %%
prev_action = jnp.zeros((pi.policy.act_dim,))
prepared = pi.policy.prepare(pi.params)
any_n, observations = {}, {}
for n in (1, 3, 5, 12, 40):
    observations[n] = obs = 0.5 * jax.random.normal(jax.random.PRNGKey(n), (n,))
    _, action, aux = pi.policy.step(prepared, pi.policy.initial_state(n), obs, prev_action)
    any_n[n] = float(action[0])
    print(f"attention neuron, {n:2d} features: action {any_n[n]:+.6f}, attention matrix {aux['attention'].shape}")

# The same 12 features in a random order give the same action.
perm = jax.random.permutation(jax.random.PRNGKey(0), 12)
_, action_perm, _ = pi.policy.step(prepared, pi.policy.initial_state(12), observations[12][perm], prev_action)
print(f"attention neuron, 12 features permuted: action {float(action_perm[0]):+.6f} "
      f"(|difference| {abs(float(action_perm[0]) - any_n[12]):.1e})")

try:
    mlp.policy.step(mlp.policy.prepare(mlp.params), mlp.policy.initial_state(12), jnp.zeros(12), prev_action)
except ValueError as e:
    mlp_error = f"{type(e).__name__}: {e}"
    print("MLP with 12 features raised", mlp_error)
else:
    raise AssertionError("the MLP accepted 12 features")

# %%
summary = {
    "attention_source": PI_SOURCE,
    "mlp_source": MLP_SOURCE,
    "episodes": EPISODES,
    "first_action": first,
    "mean_return": means,
    "any_number_of_features": any_n,
    "permuted_12_features": float(action_perm[0]),
    "mlp_error": mlp_error,
    "figures": [str(p) for p in figures] + [str(attention_png)],
}
print(json.dumps(summary, indent=1))
