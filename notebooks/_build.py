"""Write the tour notebooks (``notebooks/*.ipynb``) from the cell sources below.

    python notebooks/_build.py            # rewrite the three notebooks
    python notebooks/_build.py --check    # exit 1 if a notebook differs from what this script writes

The ``.ipynb`` files are the deliverable (opened on Colab, executed by ``tests/test_notebooks.py``);
this script only keeps them reviewable as plain Python and guarantees they are saved stripped:
no outputs, ``execution_count: null``, stable cell ids. It is not part of the package.
If you edit a notebook in Jupyter instead, port the change here (or strip its outputs yourself).
"""

from __future__ import annotations

import pathlib
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent
REPO_URL = "https://github.com/pinn-jax/pinn_jax"
COLAB = "https://colab.research.google.com/github/pinn-jax/pinn_jax/blob/main/notebooks"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def badge(stem: str) -> str:
    return f"[![Open In Colab]({BADGE})]({COLAB}/{stem}.ipynb)"


INSTALL = f'''\
# Install pinn_jax where it is missing (Colab, a clean venv); where it is installed this does nothing.
import importlib.util
import os
import subprocess
import sys

REPO_URL = "{REPO_URL}"
PINN_JAX = f"git+{{REPO_URL}}"  # what to install: this repository (or your fork), or a path to a pinn_jax wheel
if importlib.util.find_spec("pinn_jax") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PINN_JAX], check=True)'''


# ------------------------------------------------------------------------------------ quickstart
QUICKSTART = [
    ("md", f"""\
{badge("quickstart")}

# pinn_jax quickstart

`pinn_jax` re-implements *The Sensory Neuron as a Transformer: Permutation-Invariant Neural Networks
for Reinforcement Learning* (Tang & Ha, NeurIPS 2021) in JAX: a cart-pole swing-up environment, the
**attention-neuron** policy (913 parameters, indifferent to the order and number of its inputs) and
evolution strategies that train a whole population in one compiled call.

This notebook: install → look at the environment → train an attention-neuron agent for a few
generations → plot its fitness curve → watch a rollout. To play with a trained agent live, shuffling its
senses mid-episode, open the browser demo: `python -m pinn_jax demo out/demo --serve`."""),
    ("code", INSTALL),
    ("code", """\
# Size of this run. SMALL (the default, what CI executes) takes about a minute on 2 CPU cores and
# learns little; set SMALL = False (or PINN_JAX_NOTEBOOK_SMALL=0) for a run that visibly learns:
# a few minutes on a GPU runtime, longer on CPU.
SMALL = os.environ.get("PINN_JAX_NOTEBOOK_SMALL", "1") == "1"
if SMALL:
    POPULATION, ROLLOUTS, MAX_STEPS, GENERATIONS, LOG_EVERY = 16, 2, 100, 6, 3
else:
    POPULATION, ROLLOUTS, MAX_STEPS, GENERATIONS, LOG_EVERY = 64, 8, 500, 100, 10
print(f"SMALL={SMALL}: population {POPULATION} x {ROLLOUTS} rollouts x {MAX_STEPS} steps, "
      f"{GENERATIONS} generations")"""),
    ("code", """\
%matplotlib inline
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

print(f"pinn_jax {pinn_jax.__version__}, JAX {jax.__version__} on {jax.default_backend()}: {jax.devices()}")"""),
    ("md", """\
## 1. The environment

`pinn_jax.envs.make` returns a pure, jit/vmap-able [gymnax](https://github.com/RobertTLange/gymnax)
environment and its parameters. `CartPoleSwingUp-v0` is the paper's *hard* start
(`CartPoleSwingUpHarder`); `CartPoleSwingUp-easy` starts with the pole hanging straight down.
The observation has 5 features, the action is one force in [-1, 1]; `envs.render` draws a state."""),
    ("code", """\
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
plt.show()"""),
    ("md", """\
## 2. The attention-neuron policy

Every observation feature goes, together with the previous action, through one *shared* LSTM cell;
its outputs are the keys of an attention over fixed queries. The parameter count does not depend on
the number of features, and reordering the features cannot change the action."""),
    ("code", """\
policy = make_policy("attention_neuron")
params = policy.init(jax.random.PRNGKey(0), 5)
print("parameters:", count_params(params))
print(jax.tree.map(jnp.shape, params))"""),
    ("md", """\
## 3. Train with CMA-ES

A config is a validated, frozen dataclass: build it from a dict with `config.from_dict` (or read
`configs/*.yaml` with `config.load(path, overrides)`). `train` writes the run directory (config,
orbax checkpoints, `metrics.csv`, TensorBoard events, `params.npz`) and returns the trainer, the
final state and the logged rows. The same run from a shell:

```bash
python -m pinn_jax.train --config configs/quick.yaml --set train.generations=6 --run-dir runs/quick
```"""),
    ("code", """\
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
print("run directory:", sorted(p.name for p in pathlib.Path(cfg.run_dir).iterdir()))"""),
    ("code", """\
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
plt.show()"""),
    ("md", """\
## 4. Watch a rollout

`evaluate.load_model` reads a run directory's latest checkpoint (the search distribution's mean
by default). `render_episode_video` films one episode to a GIF or MP4; here the observation is
**shuffled** (a random feature order for the whole episode), which the attention neuron does not
notice."""),
    ("code", """\
model = load_model(cfg.run_dir, params="mean", name="attention neuron")
print(model.kind, "policy from", model.source)
gif = render_episode_video(model, work / "rollout.gif", condition="shuffle", env_cfg=cfg.env,
                              steps=MAX_STEPS, stride=2, width=360, height=240, fps=20)
display(Image(filename=str(gif)))"""),
    ("code", """\
summary = {
    "backend": jax.default_backend(),
    "num_params": count_params(params),
    "generations": int(rows[-1]["generation"]),
    "final_fitness_mean": float(rows[-1]["fitness_mean"]),
    "final_best_so_far": float(rows[-1]["best_so_far"]),
    "gif": str(gif),
    "gif_bytes": pathlib.Path(gif).stat().st_size,
}
print(json.dumps(summary, indent=1))"""),
    ("md", """\
## Next

* `permutation_invariance.ipynb`: the paper's study (shuffled and noisy observations, attention maps).
* `benchmark.ipynb`: generations per second and how they scale with the population.
* Full-size runs: `python -m pinn_jax.train --config configs/cartpole_pi.yaml` (the paper's setting)."""),
]


# ----------------------------------------------------------------------- permutation invariance
PERMUTATION = [
    ("md", f"""\
{badge("permutation_invariance")}

# Permutation invariance: the study

The attention neuron sees its observation as an unordered *set* of features. This notebook loads a
trained agent and checks what that buys:

1. its return is the same with shuffled observations, while an MLP's drops, and it tolerates
   extra noise features an MLP cannot even take;
2. its action does not change when the features are shuffled (up to float rounding);
3. where it attends, shown as a heatmap;
4. it accepts any number of features; the MLP raises a `ValueError`.

The agent is the model shipped with the package when there is one (`pinn_jax.models.pretrained`), else the
authors' released weights when their file is present (a repository checkout beside
`../shared/reference`), else one trained here for a few generations."""),
    ("code", INSTALL),
    ("code", """\
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
print(f"SMALL={SMALL}: {EPISODES} episodes per condition, shuffle every {SHUFFLE_EVERY}, noise {NOISE}")"""),
    ("code", """\
%matplotlib inline
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
print(f"JAX {jax.__version__} on {jax.default_backend()}; outputs go to {work}")"""),
    ("md", """\
## Load the agents

`models.load_model` takes `"pretrained:NAME"`, `"official"` or a run directory (its latest
checkpoint). For the comparison we also need an MLP: the shipped one, or a 5 → 16 → 16 → 1 MLP
trained here for a few generations (barely trained then: its point below is its fixed input size)."""),
    ("code", """\
from pinn_jax.models import pretrained

SHIPPED = pretrained.available()


def shipped(kind, preferred):
    \"\"\"A shipped model of this policy kind (``preferred`` first), or None.\"\"\"
    for name in sorted(SHIPPED, key=lambda n: n != preferred):
        if pretrained.info(name)["config"]["policy"]["name"] == kind:
            return name
    return None


def train_small(kind, name, hidden=(16, 16)):
    \"\"\"Train a small agent of this policy kind here (hard start, as the paper's agents).\"\"\"
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
print(f"evaluation env: {EVAL_ENV}")"""),
    ("md", """\
## 1. Returns under shuffling and noise

`evaluate` runs every model in every condition on the same episode keys (a paired comparison: the
same start states, permutations and noise for every model): no shuffle, shuffled once per episode,
re-shuffled every *k* steps, and *N* Gaussian noise features appended (then shuffled). Cells a
fixed-input model cannot run are `n/a`. The hard start is harsh: many episodes are lost in the first
steps whatever the policy does, hence the large spread (the paper reports 472 ± 426)."""),
    ("code", """\
conditions = default_conditions(shuffle_every=SHUFFLE_EVERY, noise=NOISE)
print("conditions:", [c.name for c in conditions])
report = ev.evaluate([pi, mlp], conditions, episodes=EPISODES, seed=0, env_cfg=EVAL_ENV, log=print)
print()
print(ev.format_table(report))
ev.save_report(report, work / "study")  # report.json (with every episode's return) and report.csv
means = {m: {c: cell["mean"] for c, cell in cells.items()} for m, cells in report["results"].items()}
for m in (pi.name, mlp.name):
    print(f"{m}: mean return unshuffled {means[m]['no_shuffle']:.1f}, shuffled {means[m]['shuffle']:.1f}")"""),
    ("code", """\
figures = ev.write_plots(report, work / "study", log=print)
for path in figures:
    print(path.name)
    display(Image(filename=str(path)))"""),
    ("md", """\
## 2. Same episode, shuffled features, same action

`record_episode` replays episode *i* of the study (here the attention neuron's best one): the same
start state whatever the condition, so the unshuffled and shuffled runs begin from identical physics
and differ only in the order of the features. The attention neuron's actions are the same step after
step; they can drift apart only late, through float rounding (the sum over features runs in another
order), which the chaotic swing-up dynamics amplify. The MLP reads its inputs by position: its first
actions may coincide while it pushes at full force (saturated at ±1 from the hanging start), but they
part after a few steps, and its shuffled episode goes another way."""),
    ("code", """\
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
plt.show()"""),
    ("md", """\
## 3. Where the attention goes

The attention matrix (16 latent slots × features) at a few steps of the same episode, now with
5 noise features appended and everything shuffled; columns are put back in the original feature
order. The bottom panel is each feature's attention averaged over the slots, over time."""),
    ("code", """\
attention_png = plot_attention(pi, work / "attention.png", "noise_5", EVAL_ENV, seed=0,
                                  episode_index=EPISODE, steps=STEPS)
display(Image(filename=str(attention_png)))"""),
    ("md", """\
## 4. Any number of features

The same 913 parameters act on 1, 3, 5, 12 or 40 features: the LSTM is shared by all features and
the attention has one column per feature. The MLP's first layer has exactly 5 inputs, so anything
else is refused with a `ValueError`."""),
    ("code", """\
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
    raise AssertionError("the MLP accepted 12 features")"""),
    ("code", """\
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
print(json.dumps(summary, indent=1))"""),
]


# ------------------------------------------------------------------------------------- benchmark
BENCHMARK = [
    ("md", f"""\
{badge("benchmark")}

# Benchmark: generations per second

One generation of evolution strategies = ask the strategy for a population → run every member for
a few episodes → tell the strategy the fitness. `pinn_jax.training.trainer.make_trainer` compiles all of it
(and several generations, folded into a `lax.scan`) into **one** XLA call, so the speed depends only
on the backend. This notebook times it on whatever JAX runs on here (CPU, or a GPU runtime on Colab:
*Runtime → Change runtime type*) for several population sizes, and plots the scaling curves.

Cost model: every episode runs its full `max_steps` (finished episodes are frozen, not skipped), so
a generation is `population × rollouts × max_steps` policy + environment steps, plus the strategy's
update (CMA-ES keeps a full covariance: its eigendecomposition over the 913 attention-neuron
parameters is a noticeable share on CPU)."""),
    ("code", INSTALL),
    ("code", """\
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
      f"median of {REPEATS} timed generations")"""),
    ("code", """\
%matplotlib inline
import json
import pathlib
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np

from pinn_jax.tools import bench

device = jax.devices()[0]
print(f"JAX {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} device(s): "
      f"{getattr(device, 'device_kind', device.platform)}; {os.cpu_count()} CPU cores visible")"""),
    ("md", """\
## Timing one generation

`trainer.run(state, n)` advances `n` generations in one compiled call. `pinn_jax.tools.bench.measure_generation`
(the same code as `python -m pinn_jax bench`) compiles it first (its time is reported separately), then
times single generations, waiting for each result (`jax.block_until_ready`), and keeps the median of a few. On a machine shared with other work the
individual timings can vary a lot: the plots show their range as error bars."""),
    ("code", """\
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
              f"{r['gens_per_sec']:8.2f} {r['steps_per_sec']:12.3g}")"""),
    ("md", """\
## Scaling curves

Left: generations per second against the population size; right: environment steps per second
(`population × rollouts × max_steps` per generation). Markers are medians, bars the fastest and the
slowest timed generation. On a CPU the work grows with the population and the throughput levels
off once the cores are busy; on a GPU small populations leave it mostly idle, so the throughput
keeps rising with the population over a wide range."""),
    ("code", """\
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
plt.show()"""),
    ("code", """\
out = pathlib.Path(tempfile.mkdtemp(prefix="pinn_jax_benchmark_")) / "benchmark.json"
report = {"backend": jax.default_backend(), "device": str(getattr(device, "device_kind", device.platform)),
          "jax": jax.__version__, "small": SMALL, "results": results}
out.write_text(json.dumps(report, indent=1))
summary = {"backend": report["backend"], "device": report["device"], "report": str(out),
           "gens_per_sec": {f"{r['policy']}@{r['population']}": round(r["gens_per_sec"], 3) for r in results}}
print(json.dumps(summary, indent=1))"""),
]


NOTEBOOKS = {"quickstart": QUICKSTART, "permutation_invariance": PERMUTATION, "benchmark": BENCHMARK}


def build(stem: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
    }
    for i, (kind, src) in enumerate(cells):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell.id = f"{stem[:40]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for stem, cells in NOTEBOOKS.items():
        path = HERE / f"{stem}.ipynb"
        text = nbformat.writes(build(stem, cells)) + "\n"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/_build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
