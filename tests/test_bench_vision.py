"""``bench --vision``: the image envs' table on a tiny size, the parts it times, and the FLOP count of its floor."""

from __future__ import annotations

import json

import jax
import pytest

from pinn_jax.experiment import setup
from pinn_jax.policies import make_policy
from pinn_jax.tools import bench, bench_vision
from pinn_jax.training.trainer import make_trainer


def test_tiny_vision_bench_writes_its_tables(tmp_path, capsys):
    assert bench.main(["--vision", "--tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    report = json.loads((tmp_path / "bench_vision.json").read_text())
    s = report["settings"]
    assert (s["population"], s["rollouts"], s["steps"], s["repeats"]) == (4, 2, 10, 2)
    assert report["peak"]["flops_per_s"] > 0 and report["peak"]["bytes_per_s"] > 0
    assert [(r["game"], r["policy"]) for r in report["runs"]] == [("breakout", "vision_attention"), ("breakout", "mlp")]
    for r in report["runs"]:
        assert r["env_steps_per_gen"] == 4 * 2 * 10
        for part in (*bench_vision.PARTS, "evaluate"):
            st = r[f"{part}_sec"]
            assert st["n"] == 2 and 0 < st["min"] <= st["median"] <= st["max"], part
        f = r["floor"]
        assert f["floor_s"] == max(f["compute_s"], f["memory_s"]) > 0
        assert f["compute_s"] == pytest.approx(r["step_cost"]["flops"] * 80 / report["peak"]["flops_per_s"])
    assert [r["obs_shape"] for r in report["runs"]] == ["25×32", "400"]
    md = (tmp_path / "bench_vision.md").read_text().splitlines()
    speed = md.index(next(line for line in md if line.startswith("| game | policy | params |")))
    assert [c.strip() for c in md[speed].strip("|").split("|")] == [
        "game", "policy", "params", "observation", "env steps / s", "s / generation", "FLOP / step (XLA)",
        "bytes / step", "floor s", "ratio"]
    assert md[speed + 2].startswith("| breakout | vision_attention | 2739 | 25×32 |")
    assert md[speed + 3].startswith("| breakout | mlp | 3235 | 400 |")
    parts = md.index(next(line for line in md if line.startswith("| game | policy | generation |")))
    assert [c.strip() for c in md[parts].strip("|").split("|")] == [
        "game", "policy", "generation", "env", "patching", "policy", "ask + tell", "rest", "policy ÷ its floor"]
    assert [line.split("|")[1:3] for line in md[parts + 2:parts + 4]] == [[" breakout ", " vision_attention "],
                                                                         [" breakout ", " mlp "]]


def test_every_game_builds_for_both_policies_pong_on_5x5_patches():
    shapes = {}
    for game in bench_vision.GAMES:
        for policy in bench_vision.POLICIES:
            exp = setup(bench_vision.make_config(game, policy, 4, 2, 10))
            assert exp.policy.kind == policy and exp.cfg.env.max_steps == 10
            shapes[game, policy] = jax.eval_shape(exp.env.reset_env, jax.random.PRNGKey(0), exp.env_params)[0].shape
    assert shapes["pong", "vision_attention"] == (48, 2 * 5 * 5 * 3) and shapes["pong", "mlp"] == (30 * 40 * 3,)
    assert shapes["freeway", "vision_attention"] == (25, 2 * 2 * 2 * 7) and shapes["breakout", "mlp"] == (400,)


def test_each_part_steps_every_episode_of_the_generation():
    tr = make_trainer(bench_vision.make_config("breakout", "vision_attention", 3, 2, 7))
    fns = bench_vision.part_fns(tr, tr.init())
    frames, game_state = fns["env"]()
    assert frames.shape == (6, 10, 10, 4) and (game_state.time == 7).all()
    obs, patch_state = fns["patching"]()
    assert obs.shape == (6, 25, 32) and (patch_state.time == 7).all()
    _, actions = fns["policy"]()  # the lockstep state of each member: (policy state, previous actions)
    assert actions.shape == (3, 2, 3) and (actions.sum(-1) == 1).all()  # one-hot, discrete


@pytest.mark.parametrize("kwargs, shape", [
    ({"name": "vision_attention"}, (25, 32)),  # Breakout on 2x2 patches
    ({"name": "vision_attention"}, (48, 150)),  # Pong-misc on 5x5 patches
    ({"name": "vision_attention", "frames": 3, "grid": 2, "head_hidden": 0, "key_dim": 4}, (7, 12)),
    ({"name": "mlp", "hidden": (8,)}, (400,)),
    ({"name": "mlp", "hidden": (16, 16)}, (5,)),
])
def test_step_flops_match_xla_cost_analysis_within_5_percent(kwargs, shape):
    policy = make_policy(**kwargs, act_dim=3, discrete=True)
    params = policy.init(jax.random.PRNGKey(0), shape[-1])
    mine = bench_vision.step_cost(policy, shape, num_params=1, rollouts=1)
    xla = bench_vision.xla_step_cost(policy, params, shape)
    assert mine["flops"] == pytest.approx(xla["flops"], rel=0.05)
    assert mine["transcendentals"] == xla["transcendentals"]


def test_step_bytes_are_observation_actions_and_a_member_s_share_of_parameters():
    policy = make_policy("vision_attention", act_dim=3, discrete=True)
    cost = bench_vision.step_cost(policy, (25, 32), num_params=2611, rollouts=8)
    assert cost["bytes"] == 4 * (25 * 32 + 2 * 3 + 2611 / 8)
    assert bench_vision.floor(cost, 1000, {"flops_per_s": 1e9, "bytes_per_s": 1e12}) == pytest.approx(
        {"compute_s": cost["flops"] * 1e-6, "memory_s": cost["bytes"] * 1e-9, "floor_s": cost["flops"] * 1e-6})


@pytest.mark.parametrize("argv, message", [
    (["--vision", "--games", "pacman"], "unknown games ['pacman']"),
    (["--vision", "--policies", "attention_neuron"], "unknown policies ['attention_neuron']"),
    (["--vision", "--steps", "0"], "--steps must be >= 1"),
    (["--vision", "--quick"], "--quick: not with --vision"),
    (["--population", "64"], "go with --vision"),
])
def test_bad_vision_arguments_exit_with_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
