"""The browser demo (pinn_jax.tools.demo): its JavaScript env and policies follow pinn_jax's JAX ones.

The page runs in headless Chromium (Debian's ``chromium``; CI installs it, see ``.ci/run``): in test mode
(``index.html?test=FILE.js``) it plays the inputs FILE.js defines and writes its results as JSON into
``#pinn-test``, read back with ``--dump-dom``. Without Chromium these tests fail in CI and skip elsewhere.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_jax.envs import EnvState, make
from pinn_jax.errors import ModelError
from pinn_jax.policies.attention_neuron import reference_step
from pinn_jax.tools import demo

MODELS = ("pretrained:cartpole_pi_catch", "pretrained:cartpole_mlp", "pretrained:cartpole_linear",
          "pretrained:cartpole_pi_es")  # the last: the headline ES agent, policy.action_gain 10
STATE_TOL = 1e-4  # max abs state difference over 1000 steps
ACTION_TOL = 1e-5  # max abs action (and recurrent state) difference
ATTENTION_TOL = 2e-5  # max abs attention difference: pretrained:cartpole_pi_es's larger logits (W_q, W_k) reach 1.0e-5
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


# ------------------------------------------------------------------ chromium
@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        msg = "chromium is not installed (apt-get install chromium): the browser demo's tests need it"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def run_chromium(chromium: str, url: str, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium on ``url`` in a fresh profile; its stdout."""
    with tempfile.TemporaryDirectory(prefix="pinn-chromium-") as profile:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout


def page_result(chromium: str, url: str, *args: str) -> dict:
    """The JSON the page wrote into ``#pinn-test``."""
    dom = run_chromium(chromium, url, "--dump-dom", *args)
    m = re.search(r'<pre id="pinn-test"[^>]*>(.*?)</pre>', dom, re.S)
    assert m and m.group(1).strip(), f"the page wrote no test result: {dom[-2000:]}"
    out = json.loads(html.unescape(m.group(1)))
    assert "error" not in out, out["error"]
    return out


# ------------------------------------------------------------------ the page
@pytest.fixture(scope="module")
def page(tmp_path_factory) -> pathlib.Path:
    """The demo of the three kinds of model, written through the command line's main()."""
    out = tmp_path_factory.mktemp("demo")
    assert demo.main([str(out), *[a for m in MODELS for a in ("--model", m)], "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def data(page) -> dict:
    text = (page / demo.DATA_FILE).read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))


# ------------------------------------------------------------------ JAX references
ENV, ENV_PARAMS = make("CartPoleSwingUp-v0")
T = np.arange(1000)
ENV_CASES = [  # (start state, actions): forces that do not balance, where the dynamics are not chaotic
    ([0.0, 0.0, np.pi, 0.0], np.where((T // 100) % 2 == 0, 0.2, -0.2)),  # square wave from hanging still
    ([0.0, 0.0, np.pi, 0.0], np.full(1000, 0.05)),  # constant push: the cart leaves the track
    ([1.0, -3.0, 2.5, 4.0], 0.3 * np.sin(2 * np.pi * T / 80)),  # a hard start, sinusoidal force
    ([-0.5, 2.0, np.pi - 1.0, -3.0], np.linspace(-2.0, 2.0, 100)),  # actions beyond [-1, 1] are clipped
]


@jax.jit
def jax_rollout(state: EnvState, actions: jax.Array, params) -> tuple:
    """pinn_jax's env stepped through ``actions`` (the params traced, as in training)."""
    def body(s, a):
        _, s2, r, done, _ = ENV.step_env(jax.random.PRNGKey(0), s, a, params)
        return s2, (jnp.stack([s2.x, s2.x_dot, s2.theta, s2.theta_dot]), r, done)
    return jax.lax.scan(body, state, actions)[1]


def env_state(v) -> EnvState:
    x, x_dot, theta, theta_dot = (jnp.float32(a) for a in v)
    return EnvState(time=jnp.int32(0), x=x, x_dot=x_dot, theta=theta, theta_dot=theta_dot)


def jax_policy_run(model, obs: np.ndarray, reference: bool = False) -> dict[str, np.ndarray]:
    """The JAX policy on recorded observations, its own previous action and state fed back: per step the
    action, and for the attention neuron the attention and the recurrent state before (``h``, ``c``, ``prev``)
    and after (``h_next``, ``c_next``) the step. ``reference``: the unfused ``reference_step`` instead."""
    policy = model.policy
    prepared = policy.prepare(model.params)

    def body(carry, o):
        state, prev = carry
        if reference:
            new, action, aux = reference_step(policy, model.params, state, o, prev)
        else:
            new, action, aux = policy.step(prepared, state, o, prev)
        per_step = {"action": action[0], "prev": prev}
        if model.kind == "attention_neuron":
            per_step.update(attention=aux["attention"], h=state.h, c=state.c, h_next=new.h, c_next=new.c)
        return (new, action), per_step

    init = (policy.initial_state(obs.shape[1]), jnp.zeros((1,), jnp.float32))
    out = jax.jit(lambda o: jax.lax.scan(body, init, o)[1])(jnp.asarray(obs, jnp.float32))
    return {k: np.asarray(v) for k, v in out.items()}


def recorded_observations(model, steps: int = 200) -> np.ndarray:
    """Observations of a closed-loop JAX episode of ``model`` from an easy start (the cart swings up)."""
    env, params = make("CartPoleSwingUp-easy")
    obs, state = env.reset_env(jax.random.PRNGKey(7), params)
    policy, prepared = model.policy, model.policy.prepare(model.params)

    def body(carry, _):
        obs, state, pstate, prev = carry
        pstate, action, _ = policy.step(prepared, pstate, obs, prev)
        obs2, state, _, _, _ = env.step_env(jax.random.PRNGKey(0), state, action, params)
        return (obs2, state, pstate, action), obs

    init = (obs, state, policy.initial_state(5), jnp.zeros((1,), jnp.float32))
    return np.asarray(jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps)[1])(init))


def noisy_shuffled(obs: np.ndarray, num_noise: int = 3, every: int = 50, seed: int = 0) -> np.ndarray:
    """``concat(obs, noise)[perm]`` (pinn_jax.envs.wrappers), Gaussian noise of std 0.1, a new permutation
    every ``every`` steps."""
    rng = np.random.default_rng(seed)
    full = np.concatenate([obs, 0.1 * rng.standard_normal((len(obs), num_noise))], axis=1).astype(np.float32)
    out = np.empty_like(full)
    for t in range(len(full)):
        if t % every == 0:
            perm = rng.permutation(full.shape[1])
        out[t] = full[t, perm]
    return out


@pytest.fixture(scope="module")
def parity(page, chromium) -> dict:
    """The page's and JAX's results on the same inputs.

    Policies: each model on a recorded 200-step sequence of observations, plus the attention neuron on the
    same sequence with 3 noise features and a permutation redrawn every 50 steps. Every sequence runs twice
    in the page: free (the JS policy feeds back its own state and action) and teacher-forced (each step
    starts from JAX's recurrent state and previous action, so each step of the evolution is compared)."""
    from pinn_jax.models import load_model
    models = [load_model(m) for m in MODELS]
    plain = recorded_observations(models[0])
    cases = [(i, plain) for i in range(len(models))] + [(0, noisy_shuffled(plain))]
    jax_runs = [jax_policy_run(models[i], obs) for i, obs in cases]
    policy_input = []
    for (i, obs), ref in zip(cases, jax_runs):
        policy_input.append({"model": i, "obs": obs.tolist()})
        forced = None
        if "h" in ref:
            forced = [[h.ravel().tolist(), c.ravel().tolist(), p.tolist()] for h, c, p in zip(ref["h"], ref["c"], ref["prev"])]
        policy_input.append({"model": i, "obs": obs.tolist(), "forced": forced})
    test_input = {
        "env": [{"state": [float(np.float32(v)) for v in s], "actions": [float(np.float32(a)) for a in acts]}
                for s, acts in ENV_CASES],
        "policy": policy_input,
        "resets": 500, "seed": 1,
    }
    (page / "parity_input.js").write_text("window.PINN_TEST_INPUT = " + json.dumps(test_input) + ";\n")
    js = page_result(chromium, (page / "index.html").as_uri() + "?test=parity_input.js")
    return {"js": js, "models": models, "cases": cases, "jax": jax_runs}


# ------------------------------------------------------------------ parity
def is_float32(values) -> bool:
    """Whether every number is a float32 (what the page's Math.fround / Float32Array give)."""
    a = np.asarray(values, np.float64)
    return bool((a.astype(np.float32).astype(np.float64) == a).all())


def test_env_matches_jax(parity):
    figures = []
    for k, ((start, actions), js) in enumerate(zip(ENV_CASES, parity["js"]["env"])):
        states, rewards, done = jax_rollout(env_state(start), jnp.asarray(actions, jnp.float32), ENV_PARAMS)
        states, rewards, done = np.asarray(states), np.asarray(rewards), np.asarray(done)
        js_states = np.asarray(js["states"], np.float64)
        assert js_states.shape == states.shape, (js_states.shape, states.shape)
        assert is_float32(js_states) and is_float32(js["rewards"]), f"case {k}: the page's env is not float32"
        diff = np.abs(js_states - states).max()
        reward_diff = np.abs(np.asarray(js["rewards"]) - rewards).max()
        figures.append(f"case {k}: {len(actions)} steps, max state diff {diff:.2e}, max reward diff {reward_diff:.2e}")
        assert diff <= STATE_TOL, figures[-1]
        assert reward_diff <= STATE_TOL, figures[-1]
        clear = np.abs(np.abs(states[:, 0]) - ENV_PARAMS.x_threshold) > STATE_TOL  # not on the edge
        assert (np.asarray(js["terminated"])[clear] == done[clear]).all(), f"case {k}: termination differs"
    assert any(np.asarray(js["terminated"]).any() for js in parity["js"]["env"])  # termination is exercised
    print("\n" + "\n".join(figures))


def test_policies_match_jax(parity):
    """From the same observation, recurrent state and previous action, the page's policy step gives JAX's
    action and next recurrent state within 1e-5 (attention 2e-5), at each of the 200 steps of every sequence."""
    figures = []
    for k, ((i, obs), ref) in enumerate(zip(parity["cases"], parity["jax"])):
        model, free, forced = parity["models"][i], parity["js"]["policy"][2 * k], parity["js"]["policy"][2 * k + 1]
        diff = np.abs(np.asarray(forced["actions"], np.float64) - ref["action"]).max()
        assert all(is_float32(forced[key]) for key in ("actions", "attention", "h", "c")), "not float32"
        line = f"{model.name} ({model.kind}), {obs.shape[0]} steps x {obs.shape[1]} features: max action diff {diff:.1e}"
        assert np.abs(ref["action"]).max() > 0.1  # the policy does act on these observations
        if model.kind != "attention_neuron":
            assert forced["actions"] == free["actions"]  # stateless
            assert diff <= ACTION_TOL, line
            figures.append(line)
            continue
        attn = np.abs(np.asarray(forced["attention"]).reshape(ref["attention"].shape) - ref["attention"]).max()
        state = max(np.abs(np.asarray(forced[k2]).reshape(ref[k2 + "_next"].shape) - ref[k2 + "_next"]).max()
                    / max(1.0, np.abs(ref[k2 + "_next"]).max()) for k2 in ("h", "c"))
        line += f", attention {attn:.1e}, next h/c {state:.1e} (relative to max(1, |c|))"
        figures.append(line)
        assert diff <= ACTION_TOL and attn <= ATTENTION_TOL and state <= ACTION_TOL, line
        # Free-running, the recurrent loop amplifies float32 rounding: JAX's own fused step and its unfused
        # reference_step drift apart alike. The page's drift must stay of that order.
        own = np.abs(jax_policy_run(model, obs, reference=True)["action"] - ref["action"]).max()
        drift = np.abs(np.asarray(free["actions"], np.float64) - ref["action"]).max()
        figures.append(f"  free-running 200 steps: page vs JAX max action diff {drift:.1e} "
                       f"(JAX reference_step vs step: {own:.1e})")
        assert drift <= max(ACTION_TOL, 10 * own), figures[-1]
    print("\n" + "\n".join(figures))


def test_resets_follow_start_distributions(parity):
    hard, easy = (np.asarray(parity["js"]["resets"][k]) for k in ("hard", "easy"))
    lo, hi = np.array([-2.4, -10, np.pi / 2, -10]), np.array([2.4, 10, 1.5 * np.pi, 10])
    assert hard.shape == (500, 4) and (hard >= lo - 1e-6).all() and (hard <= hi + 1e-6).all()
    assert (hard.max(0) - hard.min(0) > 0.9 * (hi - lo)).all()  # spread over the ranges
    assert np.abs(easy.mean(0) - [0, 0, np.pi, 0]).max() < 0.05
    assert np.abs(easy.std(0) - 0.2).max() < 0.04


# ------------------------------------------------------------------ the page itself
def test_screenshot_draws_the_scene(page, chromium, tmp_path):
    from PIL import Image
    shot = tmp_path / "demo.png"
    run_chromium(chromium, (page / "index.html").as_uri(), f"--screenshot={shot}", "--window-size=1200,1000",
                 "--hide-scrollbars", "--virtual-time-budget=2000")
    print(f"\nscreenshot: {shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def near(rgb, tol=12):
        return int((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).sum())

    cart, pole = near((40, 90, 200)), near((200, 120, 60))
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert cart > 200, f"no cart drawn ({cart} cart pixels)"
    assert pole > 100, f"no pole drawn ({pole} pole pixels)"
    assert colours > 100, f"blank page? {colours} distinct colours"


def test_page_runs_and_mlp_takes_no_noise(page, chromium):
    dom = run_chromium(chromium, (page / "index.html").as_uri() + "?model=1", "--dump-dom",
                       "--virtual-time-budget=1000")
    status = re.search(r'<div id="status">(.*?)</div>', dom, re.S).group(1)
    assert "inputs in order: [x, ẋ, cos θ, sin θ, θ̇]" in html.unescape(status)
    assert re.search(r'<input id="noise"[^>]*disabled', dom), "noise features should be off for the MLP"
    assert "n/a" in re.search(r'<span id="noise-note"[^>]*>(.*?)</span>', dom).group(1)


def test_written_files_are_self_contained(page, data):
    for name in (*demo.ASSETS, demo.DATA_FILE):
        assert (page / name).is_file(), name
    for name in ("index.html", "demo.js", demo.DATA_FILE):
        text = (page / name).read_text()
        assert not re.search(r"https?:|//[\w.-]+\.\w+/", text), f"{name} names a URL"
        assert not re.search(r"fetch\(|XMLHttpRequest|import\(|<link", text), f"{name} loads something"
    scripts = re.findall(r"<script[^>]*src=\"([^\"]+)\"", (page / "index.html").read_text())
    assert scripts == [demo.DATA_FILE, "demo.js"]  # the data as a script: works from file://
    assert [m["kind"] for m in data["models"]] == ["attention_neuron", "mlp", "linear", "attention_neuron"]
    assert data["models"][0]["num_params"] == 913
    size = sum(p.stat().st_size for p in page.iterdir() if p.name in (*demo.ASSETS, demo.DATA_FILE))
    print(f"\noutput folder: {size / 1024:.1f} KiB")
    assert size < 200_000


def test_export_folds_the_gains(data):
    """The page knows no gains: the exported config has gains 1 and, with the exported parameters, acts as the
    model does (pretrained:cartpole_pi_es has action_gain 10)."""
    from pinn_jax.models import load_model
    from pinn_jax.policies import AttentionNeuronPolicy

    model = load_model(MODELS[3])
    assert model.policy.action_gain == 10.0
    exported = data["models"][3]
    cfg = {k: v for k, v in exported["policy"].items() if k != "logit_scale"}
    assert cfg["action_gain"] == cfg["attention_gain"] == 1.0 and exported["policy"]["logit_scale"] == 1.0
    policy = AttentionNeuronPolicy(**cfg)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), exported["params"],
                          is_leaf=lambda x: isinstance(x, list))
    obs = recorded_observations(model, steps=50)
    ours, theirs = jax_policy_run(model, obs), jax_policy_run(dataclasses.replace(model, policy=policy, params=params), obs)
    np.testing.assert_array_equal(ours["action"], theirs["action"])
    assert (np.abs(ours["action"]) > 0.9).mean() > 0.5  # the gain matters: mostly saturated actions


def models_the_page_cannot_run():
    from pinn_jax.config import EnvConfig
    from pinn_jax.models import Model, load_model
    from pinn_jax.policies import AttentionNeuronPolicy

    deep = AttentionNeuronPolicy(head_layers=1)
    base = load_model(MODELS[0])
    return [(Model("deep", deep, deep.init(jax.random.PRNGKey(0), 5)), "policy.head_layers 1"),
            (dataclasses.replace(base, name="upright", env_cfg=EnvConfig(start="upright")), "'upright' start")]


@pytest.mark.parametrize("case", [0, 1], ids=["head_layers", "upright_start"])
def test_check_model_refuses_what_the_page_cannot_run(case, tmp_path):
    model, message = models_the_page_cannot_run()[case]
    with pytest.raises(ModelError) as e:
        demo.write_page(tmp_path / "out", [model])
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_page_offers_the_starts_it_accepts():
    options = re.findall(r'<option value="(\w+)">', re.search(r'<select id="start">(.*?)</select>',
                                                              (demo.HERE / "index.html").read_text()).group(1))
    assert tuple(options) == demo.STARTS


def test_serve_binds_localhost(page):
    server = demo.serve(page, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1" and port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.status == 200 and b"demo.js" in r.read()
    finally:
        server.shutdown()
        server.server_close()


def test_cli_rejects_non_swingup_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pinn_jax.tools.demo", str(tmp_path / "out"),
                           "--model", "pretrained:cartpole_v1_pi"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "swing-up" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_needs_an_out_dir(capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(["--model", MODELS[0]])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
