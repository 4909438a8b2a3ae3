"""The study on pixels (issue 41): evaluate, its conditions (a patch as a feature, occlusion), the attention
over the frame and the video of the frame beside what the agent sees, for vision models and the MLP baseline
on a flattened frame.

Sized for 2 CPU cores: random-init models on Asterix-MinAtar (where even they score now and then), 60-step
episodes, a handful of episodes, small images.
"""

from __future__ import annotations

import json

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pinn_jax import config as config_lib
from pinn_jax import models as mdl
from pinn_jax.__main__ import main as pinn_main
from pinn_jax.envs import ObsTransform, Patches, PatchWrapper, make, observed_cells, patchify, unpatchify
from pinn_jax.errors import EvaluationError
from pinn_jax.experiment import obs_dim_of, setup
from pinn_jax.study import conditions as cond_lib
from pinn_jax.study import episodes as eps
from pinn_jax.study import evaluate as ev
from pinn_jax.study import pixels, plots

GAME = "Asterix-MinAtar"
STEPS = 60
SEED = 0


def game_cfg(kind: str, **train) -> config_lib.Config:
    """The shipped Asterix config of ``kind`` (vision, mlp) on 60-step episodes; the vision one on 25 2x2 patches
    (a set of squares, where the shipped config cuts rows), its keys on frame differences alone."""
    d = config_lib.load(f"asterix_minatar_{kind}").to_dict()
    d["env"] = {**d["env"], "max_steps": STEPS, **({"patch_size": 2} if kind == "vision" else {})}
    if kind == "vision":
        d["policy"]["key_frame"] = False
    d["train"] = {**d["train"], **train}
    return config_lib.from_dict(d)


def random_model(name: str, kind: str, seed: int) -> mdl.Model:
    exp = setup(game_cfg(kind))
    return mdl.Model(name, exp.policy, exp.policy.init(jax.random.PRNGKey(seed), exp.obs_dim), exp.cfg.env)


@pytest.fixture(scope="module")
def vision():
    return random_model("vision", "vision", 1)


@pytest.fixture(scope="module")
def mlp():
    return random_model("mlp", "mlp", 2)


@pytest.fixture(scope="module")
def recordings(vision):
    """One vision episode (the same key) in each condition."""
    return {c: eps.record_episode(vision, c, vision.env_cfg, SEED, episode_index=3)
            for c in ("no_shuffle", "shuffle", "occlude_0.5", "noise_4")}


# ----------------------------------------------------------------------------- patches back into frames
def test_unpatchify_inverts_patchify_and_observed_cells_name_each_patch_s_cell():
    frame = np.random.default_rng(0).normal(size=(6, 9, 2)).astype(np.float32)
    for shape in [(3, 3), (2, 9), (6, 1), (1, 1)]:
        grid = (6 // shape[0], 9 // shape[1])
        np.testing.assert_array_equal(unpatchify(np.asarray(patchify(jnp.asarray(frame), shape)), grid, shape), frame)
    env, params = make("Breakout-MinAtar")
    wrapper = PatchWrapper(env, Patches(size=2, frames=2, occlude=0.4), ObsTransform(shuffle=True, num_noise=3))
    obs, state = wrapper.reset_env(jax.random.key(5), params)
    cells = np.asarray(observed_cells(state.keep, state.transform.perm))
    assert obs.shape == (15 + 3, 32) and sorted(cells[cells >= 0]) == sorted(np.asarray(state.keep))
    assert (cells == -1).sum() == 3 and sorted(cells[cells >= 0]) != list(cells[cells >= 0])  # noise; shuffled
    history = np.asarray(state.history).reshape(25, -1)
    np.testing.assert_array_equal(np.asarray(obs)[cells >= 0], history[cells[cells >= 0]])


# -------------------------------------------------------------------------------------- conditions
def test_occlusion_conditions_are_named_by_their_fraction_and_shuffle_once():
    c = cond_lib.parse_condition("occlude_0.30")
    assert (c.name, c.occlude, c.transform) == ("occlude_0.3", 0.3, ObsTransform(shuffle=True))
    assert c.label == "shuffle once per episode + 30% of patches occluded" and c.as_dict()["occlude"] == 0.3
    assert cond_lib.parse_condition("shuffle").occlude == 0.0
    names = [c.name for c in cond_lib.default_conditions([5], [0, 2], occlude=[0, 0.1, 0.5, 0.5])]
    assert names == ["no_shuffle", "shuffle", "shuffle_every_5", "noise_2", "occlude_0.1", "occlude_0.5"]
    for bad in ("occlude_1", "occlude_0", "occlude_1.5"):
        with pytest.raises(EvaluationError, match="occluded fraction must be > 0 and < 1"):
            cond_lib.parse_condition(bad)


def test_each_model_sees_its_own_patches_and_occlusion_drops_some(vision, mlp):
    env_cfg = config_lib.EnvConfig(name=GAME, max_steps=STEPS)  # as evaluate builds it: no patch size
    plain, occluded = cond_lib.parse_condition("shuffle"), cond_lib.parse_condition("occlude_0.5")
    assert cond_lib.condition_env(env_cfg, plain, vision)[0].observation_space().shape == (25, 32)
    assert cond_lib.condition_env(env_cfg, occluded, vision)[0].observation_space().shape == (13, 32)
    assert obs_dim_of(*cond_lib.condition_env(env_cfg, plain, mlp)) == 400  # 1x1 patches, flattened
    assert cond_lib.not_applicable(vision, env_cfg, occluded) is None
    assert cond_lib.not_applicable(mlp, env_cfg, occluded) == "fixed input size 400 (condition gives 200 features)"
    with pytest.raises(EvaluationError, match="drops image patches; CartPoleSwingUp-v0 observes feature vectors"):
        cond_lib.condition_env(config_lib.EnvConfig(), occluded, mdl.load_model("pretrained:cartpole_mlp"))


def test_a_vision_model_is_invariant_to_shuffled_patches_and_the_mlp_is_not(vision, mlp):
    conds = [cond_lib.parse_condition(n) for n in ("no_shuffle", "shuffle", "occlude_0.5")]
    report = ev.evaluate([vision, mlp], conds, episodes=6, seed=SEED, env_cfg=vision.env_cfg)
    ret, res = report["returns"], report["results"]
    assert ret["vision"]["no_shuffle"] == ret["vision"]["shuffle"] and sum(ret["vision"]["shuffle"]) > 0
    assert res["vision"]["no_shuffle"]["mean_length"] == res["vision"]["shuffle"]["mean_length"]
    assert ret["mlp"]["no_shuffle"] != ret["mlp"]["shuffle"]  # the shuffled pixels: another policy
    assert res["vision"]["occlude_0.5"]["status"] == "ok" and res["mlp"]["occlude_0.5"]["status"] == "n/a"
    assert [m["patch_size"] for m in report["meta"]["models"]] == [2, 1]


def test_the_series_figures_keep_occlusion_apart(tmp_path):
    """Occlusion conditions make their own series (with ``shuffle`` as 0), kept out of the noise and period ones."""
    conds = cond_lib.default_conditions([1, 25], [0, 5], occlude=[0.8, 0.3])
    cells = {c.name: ev.summarize(np.arange(4.0) + i) for i, c in enumerate(conds)}
    report = {"meta": {"conditions": [c.as_dict() for c in conds], "episodes": 4, "seed": 0,
                       "env": {"name": GAME, "start": "hard", "max_steps": STEPS}},
              "results": {"m": cells}, "returns": {"m": {c: list(np.arange(4.0) + i) for i, c in enumerate(cells)}}}
    names = lambda cs: [c["name"] for c in cs]  # noqa: E731
    assert names(plots.occlusion_conditions(report)) == ["shuffle", "occlude_0.3", "occlude_0.8"]
    assert names(plots.period_conditions(report)) == ["no_shuffle", "shuffle", "shuffle_every_25", "shuffle_every_1"]
    assert names(plots.noise_conditions(report)) == ["shuffle", "noise_5"]
    paths = ev.write_plots(report, tmp_path)
    assert [p.name for p in paths] == ["returns_box.png", "returns_vs_noise.png", "returns_vs_shuffle_period.png",
                                       "returns_vs_occlusion.png"]
    with Image.open(paths[-1]) as im:
        assert im.size == (800, 500)


# ----------------------------------------------------------------------------- attention over the frame
def test_attention_is_put_back_in_the_patches_cells(recordings):
    queries = recordings["shuffle"].model.policy.grid ** 2
    maps = {c: eps.frame_attention(r)[:r.length] for c, r in recordings.items()}
    assert maps["shuffle"].shape[1:] == (5, 5)
    for c in ("no_shuffle", "shuffle", "occlude_0.5"):  # every query's softmax sums to one over the patches
        np.testing.assert_allclose(maps[c].sum(axis=(1, 2)), queries, rtol=1e-5)
    assert (maps["noise_4"].sum(axis=(1, 2)) < queries).all()  # noise patches took some
    np.testing.assert_allclose(maps["shuffle"], maps["no_shuffle"], atol=1e-5)  # the shuffle undone
    state = recordings["occlude_0.5"].trajectory["env_state"]
    dropped = np.setdiff1d(np.arange(25), state.keep[0])
    assert len(dropped) == 12 and not maps["occlude_0.5"].reshape(-1, 25)[:, dropped].any()


def test_attention_figure_of_a_vision_model(vision, tmp_path):
    path = eps.plot_attention(vision, tmp_path / "attn.png", "shuffle", vision.env_cfg, SEED, episode_index=3,
                              dpi=40)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (int(40 * (3.0 * 5 + 1.0)), int(40 * 3.9))


def test_frame_pictures_colour_each_channel():
    frame = np.zeros((2, 3, 4))
    frame[0, 0, 1] = frame[0, 1, [0, 3]] = 1.0
    rgb = pixels.frame_rgb(frame)
    colours = pixels.palette(4)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3) and len({tuple(c) for c in colours}) == 4
    np.testing.assert_array_equal(rgb[0, 0], colours[1])
    np.testing.assert_array_equal(rgb[0, 1], colours[3])  # the last channel on
    assert not rgb[1].any() and not rgb[0, 2].any()


# ---------------------------------------------------------------------------- what the agent sees
def test_the_agent_s_view_is_the_frame_with_its_patches_permuted(recordings):
    rec = recordings["shuffle"]
    true, seen = eps.true_frames(rec), eps.agent_frames(rec)
    state = rec.trajectory["env_state"]
    cells = np.asarray(observed_cells(state.keep, state.transform.perm))
    for t in (0, rec.length - 1):
        np.testing.assert_array_equal(patchify(seen[t], (2, 2)), patchify(true[t], (2, 2))[cells[t]])
    assert (seen[:rec.length] != true[:rec.length]).any()
    game = rec.env.env.env  # under the patch and action wrappers
    state_at = jax.tree.map(lambda a: a[rec.length - 1], state.env_state)
    np.testing.assert_array_equal(true[rec.length - 1], np.asarray(game.get_obs(state_at), np.float32))
    plain = recordings["no_shuffle"]
    np.testing.assert_array_equal(eps.agent_frames(plain), eps.true_frames(plain))


def test_the_video_shows_the_frame_beside_the_patches_as_the_agent_gets_them(vision, tmp_path):
    """Left half: the frame; right half: the agent's arrangement of the same patches. Unshuffled the halves are one
    picture; shuffled they differ but hold the same pixels (the same count of every colour)."""
    halves = {}
    for c in ("no_shuffle", "shuffle"):
        path = eps.render_episode_video(vision, tmp_path / f"{c}.gif", c, vision.env_cfg, SEED, episode_index=3,
                                        steps=12, stride=4, width=160, height=100)
        frames = iio.imread(path, index=None)
        assert frames.shape == (3, 100, 160, 3)
        body = frames[:, 50:]  # below the text
        halves[c] = body[..., :80, :], body[..., 80:, :]
    np.testing.assert_array_equal(*halves["no_shuffle"])
    left, right = halves["shuffle"]
    assert (left != right).any()
    for t in range(3):
        count = lambda img: np.unique(img.reshape(-1, 3), axis=0, return_counts=True)  # noqa: E731
        for a, b in zip(count(left[t]), count(right[t])):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    from pinn_jax.train import train

    run_dir = tmp_path_factory.mktemp("pixels") / "run"
    d = game_cfg("vision", generations=2, rollouts=1, checkpoint_every=2, eval_every=0).to_dict()
    train(config_lib.from_dict({**d, "run_dir": str(run_dir), "strategy": {**d["strategy"], "population_size": 4}}),
          progress=False)
    return run_dir


def test_cli_evaluates_a_vision_run_with_its_figures_video_and_attention(vision_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = pinn_main(["evaluate", str(vision_run), "--episodes", "3", "--shuffle-every", "--noise", "0",
                      "--occlude", "0.5", "--max-steps", "30", "--no-progress", "--out", str(out),
                      "--video", str(out / "v.gif"), "--video-size", "96x64", "--video-stride", "10",
                      "--attention", str(out / "attention.png")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    conds = [c["name"] for c in report["meta"]["conditions"]]
    assert conds == ["no_shuffle", "shuffle", "occlude_0.5"]
    assert [c["occlude"] for c in report["meta"]["conditions"]] == [0.0, 0.0, 0.5]
    cells = report["results"][str(vision_run)]
    assert all(cells[c]["status"] == "ok" and cells[c]["n_episodes"] == 3 for c in conds)
    assert "occlude" in (out / "report.csv").read_text().splitlines()[0].split(",")
    for name in ("returns_box.png", "returns_vs_shuffle_period.png", "returns_vs_occlusion.png", "attention.png"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in captured.out
    assert not (out / "returns_vs_noise.png").exists()
    assert iio.imread(out / "v.gif", index=None).shape[1:3] == (64, 96)


def test_occlusion_of_feature_vectors_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    code = ev.main(["pretrained:cartpole_mlp_easy", "--episodes", "2", "--occlude", "0.3", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: condition 'occlude_0.3' drops image patches; CartPoleSwingUp-v0 observes "
                                 "feature vectors (occlusion is for image envs)")
    assert ev.main(["pretrained:cartpole_mlp_easy", "--occlude", "1.0"]) == 2
    assert capsys.readouterr().err.strip() == ("error: condition 'occlude_1': the occluded fraction must be > 0 "
                                               "and < 1")
