"""Image envs as patches (pinn_jax.envs.patches) and the vision attention neuron
(pinn_jax.policies.vision_attention)."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from pinn_jax import config as config_lib
from pinn_jax.envs import ActionSpec, ActionWrapper, ObsTransform, Patches, PatchWrapper, make, patchify
from pinn_jax.errors import ConfigError
from pinn_jax.experiment import setup
from pinn_jax.models import load_model
from pinn_jax.policies import make_policy
from pinn_jax.policies.vision_attention import reference_step
from pinn_jax.rollout import episode, evaluate_population, rollout_keys
from pinn_jax.train import main as train_main
from pinn_jax.train import train

BREAKOUT, BREAKOUT_PARAMS = make("Breakout-MinAtar")


def run(wrapper, key, actions, params=BREAKOUT_PARAMS):
    """Reset + one step per action: (observations (T+1, ...), states (T+1 stacked), inner frames (T+1, H, W, C))."""
    k0, k1 = jax.random.split(key)
    obs, state = wrapper.reset_env(k0, params)

    def body(state, xs):
        k, a = xs
        obs, state, *_ = wrapper.step_env(k, state, a, params)
        return state, (obs, state)

    _, (obs_t, states) = jax.lax.scan(body, state, (jax.random.split(k1, len(actions)), jnp.asarray(actions)))
    states = jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), state, states)
    frames = jax.vmap(BREAKOUT.get_obs)(states.env_state).astype(jnp.float32)
    return jnp.concatenate([obs[None], obs_t]), states, frames


ACTIONS = [0, 1, 2, 2, 1, 0, 1, 1, 2, 0, 0, 1]


def test_patches_are_cut_row_by_row_pixels_in_row_column_channel_order():
    frame = np.random.default_rng(0).normal(size=(6, 9, 2)).astype(np.float32)
    for h, w in [(3, 3), (2, 9), (6, 1)]:
        got = np.asarray(patchify(jnp.asarray(frame), (h, w)))
        expected = [frame[r:r + h, c:c + w].reshape(-1) for r in range(0, 6, h) for c in range(0, 9, w)]
        np.testing.assert_array_equal(got, np.stack(expected))
    np.testing.assert_array_equal(np.asarray(patchify(jnp.asarray(frame), (1, 1))).reshape(-1), frame.reshape(-1))


def test_rectangular_patches_cut_breakout_into_its_rows():
    wrapper = PatchWrapper(BREAKOUT, Patches(size=(1, 10), frames=2))
    obs, _, frames = run(wrapper, jax.random.key(0), ACTIONS)
    assert wrapper.grid == (10, 1) and obs.shape == (len(ACTIONS) + 1, 10, 2 * 40)
    np.testing.assert_array_equal(obs[-1][:, 40:], np.asarray(frames[-1]).reshape(10, 40))


def test_frames_are_stacked_per_patch_oldest_first():
    wrapper = PatchWrapper(BREAKOUT, Patches(size=2, frames=3))
    obs, _, frames = run(wrapper, jax.random.key(0), ACTIONS)
    assert obs.shape == (len(ACTIONS) + 1, 25, 3 * 16) and wrapper.observation_space().shape == (25, 48)
    cut = jax.vmap(lambda f: patchify(f, (2, 2)))(frames)  # (T+1, 25, 16)
    for t in range(len(ACTIONS) + 1):
        older = [cut[max(t - lag, 0)] for lag in (2, 1, 0)]  # the first frame fills the stack at reset
        np.testing.assert_array_equal(obs[t], np.concatenate(older, axis=1))
    assert float(jnp.abs(cut[1:] - cut[:-1]).sum()) > 0  # the ball moved: the stack is not trivially constant


def test_flattened_single_frames_of_size_one_are_the_frame_itself():
    wrapper = PatchWrapper(BREAKOUT, Patches(size=1, flatten=True))
    obs, _, frames = run(wrapper, jax.random.key(1), ACTIONS)
    np.testing.assert_array_equal(obs, frames.reshape(len(frames), -1))
    assert wrapper.observation_space().shape == (400,)


def test_shuffled_patches_are_the_same_patches_permuted_and_reshuffled_every_k():
    key = jax.random.key(2)
    plain, _, _ = run(PatchWrapper(BREAKOUT, Patches(size=2, frames=2)), key, ACTIONS)
    for every in (0, 4):
        obs, states, _ = run(PatchWrapper(BREAKOUT, Patches(size=2, frames=2),
                                          ObsTransform(shuffle=True, shuffle_every=every)), key, ACTIONS)
        perms = np.asarray(states.transform.perm)
        for t in range(len(obs)):
            np.testing.assert_array_equal(obs[t], plain[t][perms[t]])
        changed = [t for t in range(1, len(perms)) if (perms[t] != perms[t - 1]).any()]
        assert changed == ([4, 8, 12] if every else [])
        assert (perms[0] != np.arange(25)).any()


def test_occlusion_drops_a_fixed_random_set_and_noise_patches_are_fresh_noise():
    key = jax.random.key(3)
    plain, _, _ = run(PatchWrapper(BREAKOUT, Patches(size=2, frames=2)), key, ACTIONS)
    wrapper = PatchWrapper(BREAKOUT, Patches(size=2, frames=2, occlude=0.4), ObsTransform(num_noise=3, noise_std=0.5))
    obs, states, _ = run(wrapper, key, ACTIONS)
    keep = np.asarray(states.keep)
    assert obs.shape[1:] == (15 + 3, 32) == wrapper.observation_space().shape
    assert (keep == keep[0]).all() and len(set(keep[0])) == 15 and (np.diff(keep[0]) > 0).all()
    np.testing.assert_array_equal(obs[:, :15], plain[:, keep[0]])
    noise = np.asarray(obs[:, 15:])
    assert 0.4 < noise.std() < 0.6 and not np.isclose(noise[1:], noise[:-1]).any()
    assert not np.array_equal(wrapper.reset_env(jax.random.key(4), BREAKOUT_PARAMS)[1].keep, keep[0])  # per episode


def test_patch_wrapper_jits_and_vmaps_over_keys():
    wrapper = PatchWrapper(BREAKOUT, Patches(size=2, frames=2), ObsTransform(shuffle=True))
    keys = jax.random.split(jax.random.key(5), 4)
    obs, states = jax.jit(jax.vmap(wrapper.reset_env, in_axes=(0, None)))(keys, BREAKOUT_PARAMS)
    assert obs.shape == (4, 25, 32)
    for i, k in enumerate(keys):
        single, state = wrapper.reset_env(k, BREAKOUT_PARAMS)
        np.testing.assert_array_equal(obs[i], single)
        np.testing.assert_array_equal(states.transform.perm[i], state.transform.perm)


@pytest.mark.parametrize("patches,msg", [
    (dict(size=3), "patch size 3x3 does not divide 10x10 frames"),
    (dict(size=(2, 3)), "patch size 2x3 does not divide 10x10 frames"),
    (dict(size=0), "patch size must be an int >= 1, or (height, width) of them, got 0"),
    (dict(size=(1, 2, 3)), "patch size must be an int >= 1, or (height, width) of them, got (1, 2, 3)"),
    (dict(size=2, frames=True), "patch frames must be an int >= 1, got True"),
    (dict(size=2, occlude=1.0), "occlude must be a fraction in [0, 1), got 1.0"),
])
def test_bad_patch_geometry_is_a_one_line_config_error(patches, msg):
    with pytest.raises(ConfigError) as info:
        PatchWrapper(BREAKOUT, Patches(**patches))
    assert str(info.value).startswith(msg) and "\n" not in str(info.value)


# the vision attention neuron ------------------------------------------------------------------------------

def vision_policy(**fields):
    return make_policy("vision_attention", act_dim=3, discrete=True, **fields)


@pytest.mark.parametrize("fields", [{}, dict(frames=3, grid=3, head_hidden=0, key_dim=5, value_dim=4),
                                    dict(key_frame=True)])
def test_batched_step_equals_the_per_patch_reference(fields):
    policy = vision_policy(**fields)
    f = policy.frames * 16
    for seed in range(3):
        k_p, k_o, k_a = jax.random.split(jax.random.key(seed), 3)
        params = policy.init(k_p, f)
        obs = jax.random.bernoulli(k_o, 0.3, (25, f)).astype(jnp.float32)
        prev = jax.nn.one_hot(jax.random.randint(k_a, (), 0, 3), 3)
        _, action, aux = policy.step(policy.prepare(params), (), obs, prev)
        pre, attention = reference_step(policy, params, obs, prev)
        np.testing.assert_allclose(aux["pre"], pre, atol=1e-5)
        np.testing.assert_allclose(aux["attention"], attention, atol=1e-6)
        assert int(jnp.argmax(action)) == int(np.argmax(pre)) and float(action.sum()) == 1.0
    assert policy.num_params(f) == sum(x.size for x in jax.tree.leaves(params))


def test_parameter_count_of_the_defaults_on_breakout_patches():
    assert vision_policy().num_params(2 * 2 * 2 * 4) == 2611  # 2 frames of 2x2 patches of 4 channels
    assert vision_policy(key_frame=True).num_params(2 * 2 * 2 * 4) == 2611 + 16 * 8  # the frame's rows of w_k


def test_key_frame_lets_a_query_single_out_a_still_patch():
    """Two still patches (no difference between frames), one empty and one with a pixel lit: keyed by differences
    alone they get the same key and every query the same weight; with key_frame they do not."""
    obs = jnp.zeros((2, 2 * 16)).at[1, jnp.array([3, 16 + 3])].set(1.0)  # patch 1 lit in both frames
    for key_frame, same in [(False, True), (True, False)]:
        policy = vision_policy(key_frame=key_frame)
        params = policy.init(jax.random.key(4), 32)
        attention = policy.step(policy.prepare(params), (), obs, jnp.zeros(3))[2]["attention"]
        assert bool(jnp.allclose(attention[:, 0], attention[:, 1], atol=1e-7)) == same


def patch_env(name, patches, transform=ObsTransform()):
    env, params = make(name)
    return PatchWrapper(ActionWrapper(env, ActionSpec.from_space(env.action_space(params))), patches, transform), params


@pytest.mark.parametrize("transform", [ObsTransform(shuffle=True), ObsTransform(shuffle=True, shuffle_every=3)])
def test_shuffled_patches_give_the_same_actions_over_an_episode(transform):
    """Same episode key: the same frames, so a permutation-invariant policy takes the same actions throughout
    (Freeway: its cars move every step and it never ends early)."""
    policy = vision_policy()
    params = policy.init(jax.random.key(0), 2 * 2 * 2 * 7)
    key = jax.random.key(8)
    plain, shuffled = (episode(policy, *patch_env("Freeway-MinAtar", Patches(size=2, frames=2), t), params, key,
                               40, record=True).trajectory for t in (ObsTransform(), transform))
    assert not np.array_equal(plain["obs"], shuffled["obs"])  # the policy did see other orders
    np.testing.assert_array_equal(plain["action"], shuffled["action"])
    np.testing.assert_allclose(plain["aux"]["pre"], shuffled["aux"]["pre"], atol=1e-5)
    assert np.bincount(np.argmax(plain["action"], axis=-1), minlength=3).min() >= 5  # every action, often
    np.testing.assert_array_equal(plain["env_state"].env_state.pos, shuffled["env_state"].env_state.pos)


def test_the_previous_action_moves_the_attention():
    """The keys' tanh keeps the action's term: without it the term would add the same logit to every patch."""
    policy = vision_policy()
    params = policy.init(jax.random.key(9), 32)
    obs = jax.random.bernoulli(jax.random.key(10), 0.3, (25, 32)).astype(jnp.float32)
    attn = [policy.step(policy.prepare(params), (), obs, jax.nn.one_hot(a, 3))[2]["attention"] for a in range(3)]
    for a, b in [(0, 1), (1, 2)]:  # a change of every query's logits that is no common shift over the patches
        assert float(jnp.log(attn[a] / attn[b]).std(axis=1).min()) > 1e-3


def test_jit_and_vmap_over_members_and_episodes_match_single_steps():
    policy = vision_policy(frames=3)
    members = jax.vmap(lambda k: policy.init(k, 48))(jax.random.split(jax.random.key(11), 3))
    obs = jax.random.bernoulli(jax.random.key(12), 0.3, (3, 4, 25, 48)).astype(jnp.float32)
    state = policy.initial_batch_state(48, 4)
    step = jax.jit(jax.vmap(lambda m, o: policy.step_batch(policy.prepare(m), state, o)[1]))
    actions = step(members, obs)
    for i in range(3):
        prepared = policy.prepare(jax.tree.map(lambda a: a[i], members))
        for b in range(4):
            np.testing.assert_array_equal(actions[i, b], policy.step(prepared, (), obs[i, b], jnp.zeros(3))[1])
    assert len({int(a) for a in jnp.argmax(actions, axis=-1).ravel()}) > 1


def test_population_returns_are_the_single_episodes_returns():
    """SpaceInvaders, where random members already score within 40 steps."""
    env, params = patch_env("SpaceInvaders-MinAtar", Patches(size=2, frames=3), ObsTransform(shuffle=True))
    policy = make_policy("vision_attention", act_dim=4, discrete=True, frames=3)
    members = jax.vmap(lambda k: policy.init(k, 72))(jax.random.split(jax.random.key(11), 3))
    key = jax.random.PRNGKey(12)  # raw keys, as the trainer's
    returns = jax.jit(lambda m, k: evaluate_population(policy, env, params, m, k, 2, 40))(members, key)
    assert float(returns.max()) > 0
    for i, ep_key in enumerate(rollout_keys(key, 3, 2, common=True)):
        for m in range(3):
            member = jax.tree.map(lambda a: a[m], members)
            assert float(returns[m, i]) == float(episode(policy, env, params, member, ep_key, 40).ret)


@pytest.mark.parametrize("fields,msg", [(dict(frames=1), "frames must be >= 2"),
                                        (dict(query_dim=5), "query_dim must be even")])
def test_bad_vision_fields_are_refused(fields, msg):
    with pytest.raises(ValueError, match=msg):
        vision_policy(**fields)


# wired in: configs, setup, training ------------------------------------------------------------------------

@pytest.mark.parametrize("game,actions", [("breakout", 3), ("asterix", 5)])
def test_shipped_vision_configs_and_their_mlp_baselines(game, actions):
    vision = setup(config_lib.load(f"{game}_minatar_vision"))
    mlp = setup(config_lib.load(f"{game}_minatar_mlp"))
    assert vision.policy.kind == "vision_attention" and vision.policy.act_dim == actions
    channels = 4  # Breakout's and Asterix's: the rows are 10 patches of 10 pixels x 4 channels, 2 frames
    assert vision.env.observation_space(vision.env_params).shape == (10, 2 * 10 * channels) and vision.policy.key_frame
    assert 2000 < vision.num_params < 4000 and 2000 < mlp.num_params < 4000
    assert vision.cfg.train.shuffle and not mlp.cfg.train.shuffle
    assert (vision.cfg.strategy, vision.cfg.train.rollouts) == (mlp.cfg.strategy, mlp.cfg.train.rollouts)
    assert vision.cfg.env.max_steps == mlp.cfg.env.max_steps == 500
    obs, state = mlp.env.reset_env(jax.random.key(0), mlp.env_params)  # the MLP sees the frame itself
    frame = mlp.env.env.env.get_obs(state.env_state)
    np.testing.assert_array_equal(obs, np.asarray(frame, np.float32).reshape(-1))


def vision_cfg(**env):
    return config_lib.from_dict({
        "env": {"name": "Breakout-MinAtar", "max_steps": 30, "patch_size": 2, **env},
        "policy": {"name": "vision_attention", "frames": 3},
        "strategy": {"name": "Sep_CMA_ES", "population_size": 6, "sigma_init": 0.1},
        "train": {"generations": 2, "rollouts": 2, "shuffle": True, "log_every": 1, "checkpoint_every": 2}})


def test_setup_gives_the_policy_its_frames_of_patches_and_trains(tmp_path):
    exp = setup(vision_cfg())
    assert exp.obs_dim == 3 * 16 and exp.num_params == exp.policy.num_params(48)
    assert isinstance(exp.env, PatchWrapper) and exp.env.patches == Patches(size=2, frames=3)
    assert exp.env.cfg == ObsTransform(shuffle=True)
    cfg = config_lib.from_dict({**vision_cfg().to_dict(), "run_dir": str(tmp_path / "run")})
    train(cfg, progress=False)
    model = load_model(str(tmp_path / "run"))
    assert model.kind == "vision_attention" and model.policy.frames == 3
    assert sum(x.size for x in jax.tree.leaves(model.params)) == exp.num_params


@pytest.mark.parametrize("overrides,msg", [
    (["env.patch_size=3"], "config key 'env.patch_size': Breakout-MinAtar: patch size 3x3 does not divide 10x10 frames"),
    (["env.name=CartPole-v1"], "config key 'env.patch_size' cuts image frames into patches; CartPole-v1 observes "
                               "vectors of shape (4,): set it to null"),
    (["env.name=CartPole-v1", "env.patch_size=null"], "config key 'policy.name': vision_attention observes image "
                                                      "patches; CartPole-v1 observes vectors of shape (4,)"),
    (["env.patch_size=null", "policy.name=mlp"], "config key 'env.name': Breakout-MinAtar observes arrays of shape "
                                                 "(10, 10, 4); pinn_jax's policies take flat vectors"),
    (["policy.frames=1"], "config key 'policy.frames' must be >= 2"),
    (["policy.query_dim=7"], "config key 'policy.query_dim' must be even"),
    (["env.patch_size=0"], "config key 'env.patch_size' must be >= 1, [height, width] of ints >= 1, or null, got 0"),
    (["env.patch_size=[1,2,3]"], "config key 'env.patch_size' must be >= 1, [height, width] of ints >= 1, or null"),
    (["env.patch_size=two"], "config key 'env.patch_size' has the wrong type: expected int or a list of ints or null"),
])
def test_vision_config_mistakes_are_one_line_errors(tmp_path, capsys, overrides, msg):
    path = tmp_path / "vision.yaml"
    path.write_text(yaml.safe_dump(vision_cfg().to_dict()))
    argv = ["--config", str(path), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert train_main(argv + [a for o in overrides for a in ("--set", o)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {msg}"), err
    assert not (tmp_path / "run").exists()


def test_the_issues_evaluate_command_on_the_shipped_breakout_agents(tmp_path):
    """``python -m pinn_jax.evaluate pretrained:NAME --shuffle-every --noise 0 --max-steps 500``, as issue 41
    writes it (short episodes here): the vision agent scores the same with its rows shuffled, the MLP does not."""
    names = ["pretrained:breakout_minatar_vision", "pretrained:breakout_minatar_mlp"]
    out = subprocess.run([sys.executable, "-m", "pinn_jax.evaluate", *names, "--shuffle-every", "--noise", "0",
                          "--max-steps", "150", "--episodes", "8", "--seed", "3", "--no-progress",
                          "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "ev" / "report.json").read_text())["results"]
    (vision, v), (mlp, m) = ((name, {c: r["mean"] for c, r in results[name].items()}) for name in names)
    assert set(v) == set(m) == {"no_shuffle", "shuffle"}
    assert v["shuffle"] == v["no_shuffle"] > m["no_shuffle"] > 2 * m["shuffle"]
    import pinn_jax  # the API's evaluate is still its function, not the command's module

    assert callable(pinn_jax.evaluate)
