"""The evaluation study (python -m pinn_jax evaluate): paired vmapped episodes, n/a cells for
fixed-input models, report files, plots, videos, attention figures and CLI errors.

Sized for 2 CPU cores: 50-step episodes on the easy start, a handful of episodes, small images.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import imageio.v2 as imageio2
import imageio.v3 as iio
import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from PIL import Image

from pinn_jax import config as config_lib
from pinn_jax import models as mdl
from pinn_jax.config import EnvConfig
from pinn_jax.envs import ObsTransform
from pinn_jax.errors import EvaluationError, ModelError
from pinn_jax.experiment import build_env
from pinn_jax.models import official
from pinn_jax.policies import AttentionNeuronPolicy, count_params, make_policy
from pinn_jax.rollout import episode
from pinn_jax.study import conditions as cond_lib
from pinn_jax.study import episodes as eps
from pinn_jax.study import evaluate as ev
from pinn_jax.study.plots import unshuffle

STEPS = 50
ENV = EnvConfig(start="easy", max_steps=STEPS)
SEED = 11
EPISODES = 5
AN = make_policy("attention_neuron")
MLP = make_policy("mlp")


@pytest.fixture(scope="module")
def models():
    an = mdl.Model("attn", AN, AN.init(jax.random.PRNGKey(7), 5), EnvConfig())
    mlp = mdl.Model("mlp", MLP, MLP.init(jax.random.PRNGKey(8), 5), EnvConfig())
    return an, mlp


@pytest.fixture(scope="module")
def conditions():
    return [cond_lib.parse_condition(n) for n in ("no_shuffle", "shuffle", "noise_3")]


@pytest.fixture(scope="module")
def logged_report(models, conditions):
    logs: list[str] = []
    report = ev.evaluate(models, conditions, episodes=EPISODES, seed=SEED, env_cfg=ENV, log=logs.append)
    return report, logs


@pytest.fixture(scope="module")
def report(logged_report):
    return logged_report[0]


def tiny_run(run_dir) -> config_lib.Config:
    """A seconds-sized run: linear policy, easy start (as tests/test_train.py's ``tiny``)."""
    return config_lib.from_dict({
        "seed": 3, "run_dir": str(run_dir),
        "env": {"start": "easy", "max_steps": STEPS},
        "policy": {"name": "linear"},
        "strategy": {"name": "CMA_ES", "population_size": 8, "sigma_init": 0.5},
        "train": {"generations": 2, "rollouts": 2, "log_every": 1, "checkpoint_every": 1},
    })


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pinn_jax.train import train

    run_dir = tmp_path_factory.mktemp("eval") / "run"
    tr, state, _ = train(tiny_run(run_dir), progress=False)
    return run_dir, tr, state


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size  # (width, height)


# ------------------------------------------------------------------------------- conditions / keys
def test_condition_names_round_trip():
    conds = cond_lib.default_conditions(shuffle_every=(50, 100), noise=(0, 5, 10), occlude=(0.25,))
    assert [c.name for c in conds] == ["no_shuffle", "shuffle", "shuffle_every_50", "shuffle_every_100",
                                       "noise_5", "noise_10", "occlude_0.25"]
    for c in conds:
        assert cond_lib.parse_condition(c.name) == c
    noise5 = cond_lib.parse_condition("noise_5").transform
    assert (noise5.shuffle, noise5.shuffle_every, noise5.num_noise) == (True, 0, 5)
    assert cond_lib.parse_condition("shuffle_every_7").transform.shuffle_every == 7
    with pytest.raises(EvaluationError):
        cond_lib.parse_condition("sometimes")
    with pytest.raises(EvaluationError):
        cond_lib.default_conditions(shuffle_every=(0,))


def test_a_condition_is_a_name_and_an_obs_transform():
    """A condition holds the ObsTransform its episodes see (no copy of its fields) and the fraction of image
    patches occluded; reports show the same name, fields and label as before, and that fraction."""
    assert [f.name for f in dataclasses.fields(cond_lib.Condition)] == ["name", "transform", "occlude"]
    cond = cond_lib.parse_condition("noise_5_every_10", noise_std=0.2)
    assert cond.transform == ObsTransform(shuffle=True, shuffle_every=10, num_noise=5, noise_std=0.2)
    assert cond.as_dict() == {"name": "noise_5_every_10", "shuffle": True, "shuffle_every": 10, "num_noise": 5,
                              "noise_std": 0.2, "occlude": 0.0, "label": "shuffle every 10 steps + 5 noise features"}
    assert list(cond.as_dict()) == ["name", "shuffle", "shuffle_every", "num_noise", "noise_std", "occlude", "label"]
    assert cond_lib.Condition("plain").transform == ObsTransform()
    with pytest.raises(EvaluationError, match=r"^condition 'no_shuffle': noise_std must be > 0, got -1\.0$"):
        cond_lib.make_condition(noise_std=-1.0)


def test_the_study_defaults_are_defined_once():
    """evaluate's and study's defaults (function and command line) are the conditions module's."""
    from pinn_jax.study import across_envs

    args = ev.parse_args(["official"])
    assert (args.episodes, args.shuffle_every, args.noise, args.noise_std) == (
        cond_lib.DEFAULT_EPISODES, list(cond_lib.SHUFFLE_PERIODS), list(cond_lib.NOISE_COUNTS),
        ObsTransform().noise_std)
    assert cond_lib.default_conditions(args.shuffle_every, args.noise, args.noise_std) == cond_lib.default_conditions()
    assert inspect.signature(ev.evaluate).parameters["episodes"].default == cond_lib.DEFAULT_EPISODES
    assert inspect.signature(across_envs.study).parameters["conditions"].default is cond_lib.ACROSS_ENVS


# --------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("cname", ["noise_3"])
def test_report_equals_direct_episode_loop(report, models, cname):
    """Every per-episode return and statistic equals a plain loop over ``rollout.episode``."""
    an = models[0]
    cond = cond_lib.parse_condition(cname)
    env, env_params = build_env(ENV, cond.transform)
    one = jax.jit(lambda key: episode(AN, env, env_params, an.params, key, STEPS).ret)
    direct = np.array([float(one(jax.random.fold_in(jax.random.PRNGKey(SEED), i))) for i in range(EPISODES)])
    got = np.asarray(report["returns"]["attn"][cname])
    assert got.shape == (EPISODES,)
    assert np.unique(direct).size > 1  # distinct episodes, so a key mix-up would show
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)
    cell = report["results"]["attn"][cname]
    assert cell["status"] == "ok" and cell["n_episodes"] == EPISODES
    expect = {"mean": direct.mean(), "std": direct.std(), "median": np.median(direct),
              "q25": np.percentile(direct, 25), "q75": np.percentile(direct, 75),
              "min": direct.min(), "max": direct.max()}
    for k, v in expect.items():
        assert cell[k] == pytest.approx(v, rel=1e-5, abs=1e-5), k


def test_models_share_episode_keys(report):
    """Paired comparison: the first key of a run of 3 episodes is the first of a run of 5, and the
    two models' returns differ (different policies) on the same episodes."""
    np.testing.assert_array_equal(np.asarray(cond_lib.episode_keys(SEED, 3)), np.asarray(cond_lib.episode_keys(SEED, 5))[:3])
    assert report["returns"]["attn"]["no_shuffle"] != report["returns"]["mlp"]["no_shuffle"]
    assert "fold_in" in report["meta"]["keys"]


def test_shuffle_keeps_attention_first_action(models):
    """Permuting the features leaves the attention neuron's first action unchanged (an MLP's changes);
    shuffling once per episode leaves the whole episode unchanged."""
    an, mlp = models
    base = eps.record_episode(an, "no_shuffle", ENV, SEED, episode_index=1)
    obs0 = base.trajectory["obs"][0]
    for cname in ("shuffle", "shuffle_every_20"):
        rec = eps.record_episode(an, cname, ENV, SEED, episode_index=1)
        shuffled = rec.trajectory["obs"][0]
        assert not np.array_equal(shuffled, obs0)  # really permuted ...
        np.testing.assert_allclose(np.sort(shuffled), np.sort(obs0), rtol=0, atol=0)  # ... the same features
        np.testing.assert_allclose(rec.trajectory["action"][0], base.trajectory["action"][0], atol=1e-6)
    once = eps.record_episode(an, "shuffle", ENV, SEED, episode_index=1)
    np.testing.assert_allclose(once.trajectory["action"][:20], base.trajectory["action"][:20], atol=1e-4)
    # The MLP is not permutation invariant: the same check would catch it.
    m0 = eps.record_episode(mlp, "no_shuffle", ENV, SEED, episode_index=1).trajectory["action"][0]
    m1 = eps.record_episode(mlp, "shuffle", ENV, SEED, episode_index=1).trajectory["action"][0]
    assert np.abs(m0 - m1).max() > 1e-4


def test_fixed_input_model_is_na_in_noise_condition(logged_report, models, tmp_path):
    report, logs = logged_report
    cell = report["results"]["mlp"]["noise_3"]
    assert cell["status"] == "n/a"
    assert "fixed input size 5" in cell["reason"]
    assert all(cell[k] == "n/a" for k in ev.STAT_KEYS)
    assert report["returns"]["mlp"]["noise_3"] is None
    assert report["results"]["mlp"]["no_shuffle"]["status"] == "ok"
    assert report["results"]["attn"]["noise_3"]["status"] == "ok"
    assert np.isfinite(report["results"]["attn"]["noise_3"]["mean"])
    assert any("mlp" in m and "fixed input size 5" in m for m in logs)
    assert cond_lib.not_applicable(models[1], ENV, cond_lib.parse_condition("noise_3")).startswith("fixed input size 5")
    assert cond_lib.not_applicable(models[0], ENV, cond_lib.parse_condition("noise_3")) is None
    # report files
    jpath, cpath = ev.save_report(report, tmp_path)
    saved = json.loads(jpath.read_text())
    assert saved["results"]["mlp"]["noise_3"]["reason"] == cell["reason"]
    rows = cpath.read_text().splitlines()
    assert rows[0].split(",")[:5] == ["model", "condition", "status", "reason", "mean"]
    assert len(rows) == 1 + 2 * 3
    na_row = next(r for r in rows if r.startswith("mlp,noise_3,"))
    assert "n/a,fixed input size 5" in na_row
    table = ev.format_table(report)
    assert "noise_3" in table and "n/a" in table and "fixed input size 5" in table


# -------------------------------------------------------------------------------------- pictures
def test_plots_are_written_with_their_pixel_size(report, tmp_path):
    paths = ev.write_plots(report, tmp_path)
    sizes = {p.name: png_size(p) for p in paths}
    assert sizes == {"returns_box.png": (1000, 550), "returns_vs_noise.png": (800, 500),
                     "returns_vs_shuffle_period.png": (800, 500)}
    assert all(p.stat().st_size > 5000 for p in paths)
    small = ev.plot_returns(report, tmp_path / "small.png", figsize=(4, 3), dpi=50)
    assert png_size(small) == (200, 150)


def test_frame_annotation_keeps_the_picture():
    from pinn_jax.study.video import FrameAnnotator

    frame = np.full((64, 96, 3), 200, np.uint8)
    frame[40:, :, 0] = 30
    out = FrameAnnotator(96, 64)(frame, ["step 1"])
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[40:], frame[40:])  # untouched below the text
    assert (out[:12, :40] != frame[:12, :40]).any()  # text drawn at the top left


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg subprocess while reading
@pytest.mark.parametrize("suffix,stride", [("gif", 5), ("mp4", 10)])
def test_video_file(models, tmp_path, suffix, stride):
    an = models[0]
    path = eps.render_episode_video(an, tmp_path / f"ep.{suffix}", "shuffle", ENV, SEED, steps=STEPS,
                                   stride=stride, width=96, height=64, fps=10)
    assert path.is_file() and path.stat().st_size > 0
    length = eps.record_episode(an, "shuffle", ENV, SEED).length
    n_frames = len(range(0, length, stride))
    if suffix == "gif":
        frames = iio.imread(path, index=None)
        assert frames.shape[0] == n_frames and frames.shape[1:3] == (64, 96)
    else:
        reader = imageio2.get_reader(path)
        try:
            assert reader.get_data(0).shape == (64, 96, 3)
            assert reader.count_frames() == n_frames
        finally:
            reader.close()


def test_video_films_the_whole_episode_by_default(tmp_path):
    """Without ``steps`` the video is the whole episode (here 400 steps, beyond the old 300-step cut)."""
    model = mdl.load_model("pretrained:cartpole_mlp_easy")
    env_cfg = EnvConfig(start="easy", max_steps=400)
    length = eps.record_episode(model, "no_shuffle", env_cfg, SEED).length
    assert length == 400  # it balances to the time limit
    path = eps.render_episode_video(model, tmp_path / "ep.gif", "no_shuffle", env_cfg, SEED, stride=50,
                                    width=32, height=32)
    assert iio.imread(path, index=None).shape[0] == len(range(0, length, 50))


def test_video_of_an_env_without_rendering_fails_before_the_evaluation(models, tmp_path, capsys, monkeypatch):
    evaluated = []
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: evaluated.append(a))
    code = ev.main(["pretrained:pendulum_mlp", "--episodes", "2", "--shuffle-every", "--noise", "0",
                    "--no-progress", "--video", str(tmp_path / "v.gif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: video rendering is only available for CartPoleSwingUp and image envs, "
                                 "not Pendulum-v1")
    assert not evaluated and not (tmp_path / "v.gif").exists()


def test_attention_plot(models, tmp_path):
    an, mlp = models
    path = eps.plot_attention(an, tmp_path / "attn.png", "shuffle_every_20", ENV, SEED, figsize=(8, 5), dpi=50)
    assert png_size(path) == (400, 250) and path.stat().st_size > 0
    with pytest.raises(EvaluationError, match="attention-neuron"):
        eps.plot_attention(mlp, tmp_path / "no.png", "shuffle", ENV, SEED)
    assert not (tmp_path / "no.png").exists()


def test_unshuffle_restores_feature_order():
    perm = np.array([[2, 0, 1], [0, 1, 2]])
    feats = np.array([10.0, 11.0, 12.0])
    observed = np.stack([feats[p] for p in perm])[:, None, :]  # (T, 1, n) as positions
    np.testing.assert_array_equal(unshuffle(observed, perm)[:, 0], np.stack([feats, feats]))


# ------------------------------------------------------------------------------------ model specs
def test_run_directory_and_checkpoint_load(run):
    run_dir, tr, state = run
    mean = mdl.load_model(str(run_dir))
    best = mdl.load_model(str(run_dir / "checkpoints" / "1"), params="best")
    assert mean.kind == "linear" and mean.env_cfg == tr.cfg.env and mean.input_size == 5
    for a, b in zip(jax.tree.leaves(mean.params), jax.tree.leaves(tr.mean_params(state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "generation 1" in best.source


def test_eval_best_parameters_load_and_export(run, tmp_path):
    import dataclasses

    from pinn_jax.models import pretrained
    from pinn_jax.train import train

    # the module's run kept no held-out scores: asking for them is a one-line error naming the fix
    with pytest.raises(ModelError, match="no eval_best.npz in .*train.eval_every"):
        mdl.load_model(str(run[0]), params="eval_best")
    cfg = tiny_run(tmp_path / "run")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, generations=3, eval_every=1,
                                                             eval_episodes=2))
    train(cfg, progress=False)
    kept = np.load(tmp_path / "run" / "eval_best.npz")
    model = mdl.load_model(str(tmp_path / "run"), params="eval_best")
    np.testing.assert_array_equal(np.asarray(ravel_pytree(model.params)[0]), kept["params"])
    assert f"generation {int(kept['generation'])}" in model.source
    (tmp_path / "pkg").mkdir()
    pretrained.export(tmp_path / "run", "demo", "eval_best", dest=tmp_path / "pkg")
    meta = json.loads((tmp_path / "pkg" / "demo.json").read_text())
    assert meta["params"] == "eval_best" and meta["generations"] == int(kept["generation"])
    np.testing.assert_array_equal(np.load(tmp_path / "pkg" / "demo.npz")["params"], kept["params"])


def test_cli_end_to_end(run, tmp_path, capsys):
    run_dir = run[0]
    out = tmp_path / "out"
    code = ev.main([str(run_dir), str(run_dir / "checkpoints" / "2"), "--episodes", "3", "--max-steps", str(STEPS),
                    "--env-start", "easy", "--shuffle-every", "25", "--noise", "0", "2", "--out", str(out),
                    "--video", str(out / "v.gif"), "--video-steps", "20", "--video-stride", "4",
                    "--video-size", "64x48"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no_shuffle" in captured.out and "shuffle_every_25" in captured.out
    report = json.loads((out / "report.json").read_text())
    a, b = report["results"]  # the run dir and its latest checkpoint: same params, same episodes
    assert report["returns"][a]["shuffle"] == report["returns"][b]["shuffle"]
    assert report["results"][a]["noise_2"]["status"] == "n/a"
    assert report["results"][a]["noise_2"]["reason"].startswith("fixed input size 5")
    assert report["results"][a]["shuffle_every_25"]["n_episodes"] == 3
    for name in ("report.csv", "returns_box.png", "returns_vs_noise.png", "returns_vs_shuffle_period.png"):
        assert (out / name).stat().st_size > 0
    frames = iio.imread(out / "v.gif", index=None)
    assert frames.shape[1:3] == (48, 64) and 1 <= frames.shape[0] <= 5
    assert f"wrote {out / 'v.gif'} (its first 20 steps at most)" in captured.out


def test_cli_attention_needs_attention_model(run, capsys):
    assert ev.main([str(run[0]), "--attention", "x.png", "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "attention-neuron" in err


def test_an_env_of_another_task_takes_the_default_start_and_a_conflicting_one_is_one_line(capsys):
    """The first model's start follows it only within its task (a start off the swing-up is refused)."""
    args = ["pretrained:cartpole_mlp_easy", "--episodes", "2", "--shuffle-every", "--noise", "0", "--no-progress"]
    assert ev.main([*args, "--env", "Pendulum-v1", "--max-steps", "5"]) == 0
    assert "Pendulum-v1, max 5 steps" in capsys.readouterr().out
    assert ev.main([*args, "--env", "CartPoleSwingUp-hard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: config keys 'env.name' and 'env.start' disagree: CartPoleSwingUp-hard starts hard, "
                   "env.start is 'easy'; set env.start: hard, or use CartPoleSwingUp-v0")


def test_bad_paths_are_one_line_errors(run, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    assert ev.main([str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "Traceback" not in err
    gen = run[0] / "checkpoints" / "999"
    assert ev.main([str(gen)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(gen) in err
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    with pytest.raises(ModelError, match="config.yaml"):
        mdl.load_model(str(not_a_run))


def test_official_weights():
    try:
        official.weights_path()
    except ModelError as e:
        pytest.skip(str(e))
    model = mdl.load_model("official")
    assert isinstance(model.policy, AttentionNeuronPolicy) and model.kind == "attention_neuron"
    assert count_params(model.params) == 913
    assert model.env_cfg.start == "hard" and model.input_size is None


def test_official_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PINN_JAX_REFERENCE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=str(tmp_path)):
        mdl.load_model("official")
    assert ev.main(["official"]) == 2
    assert "official weights not found" in capsys.readouterr().err


def test_pretrained_spec(monkeypatch):
    params = AN.init(jax.random.PRNGKey(0), 5)
    monkeypatch.setattr(mdl.pretrained, "load", lambda name: (AN, params, config_lib.Config(env=EnvConfig(start="easy"))))
    model = mdl.load_model("pretrained:demo")
    assert model.name == "pretrained:demo" and model.policy is AN and model.env_cfg.start == "easy"
    monkeypatch.undo()
    with pytest.raises(ModelError, match=r"no pretrained model 'demo' \(available: .*cartpole_pi_catch"):
        mdl.load_model("pretrained:demo")
    with pytest.raises(ModelError, match="give a name after 'pretrained:'"):
        mdl.load_model("pretrained:")




def test_the_table_names_each_model_in_full_with_mean_and_standard_error(report):
    """Cells are mean ± s.e., as study, training and the README give them, and the table says so; a long model
    name is not cut (it used to read ``…ned:cartpole_pi_catch``)."""
    long_name = "pretrained:cartpole_pi_catch_large_es"
    renamed = {**report, "results": {long_name if m == "attn" else m: r for m, r in report["results"].items()}}
    table = ev.format_table(renamed)
    head, rule, *rows = table.splitlines()
    assert long_name in head and "…" not in table
    cell = report["results"]["attn"]["shuffle"]
    assert f"{cell['mean']:.1f} ± {cell['sem']:.1f}" in next(r for r in rows if r.startswith("shuffle "))
    assert cell["sem"] < cell["std"] and "mean ± s.e." in table and "± std" not in table
    assert all(len(r) == len(head) for r in rows[:3])  # the columns line up under their full names


def test_error_bars_are_standard_errors_kept_within_the_returns_seen():
    from pinn_jax.study.plots import error_bars

    cells = [{"mean": 10.0, "sem": 4.0, "min": 0.0, "max": 30.0},   # the s.e. fits: plain s.e. bars
             {"mean": 1.0, "sem": 4.0, "min": 0.0, "max": 30.0},    # below: no lower than the lowest return
             {"mean": 499.0, "sem": 4.0, "min": 300.0, "max": 500.0},  # above: no higher than the highest
             {"mean": 5.0, "sem": float("nan"), "min": 5.0, "max": 5.0}]  # one episode: no bar
    np.testing.assert_allclose(error_bars(cells), [[4.0, 1.0, 4.0, 0.0], [4.0, 4.0, 1.0, 0.0]])
