"""Config validation: every bad value is one ``ConfigError`` line naming the dotted key, never a traceback
or a silent reinterpretation; at the command line, ``error: ...`` on stderr, exit code 2, no run directory."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import typing

import pytest

from pinn_jax import config as config_lib
from pinn_jax import train
from pinn_jax.config import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "quick.yaml"


@pytest.fixture
def cli_error(capsys, tmp_path, monkeypatch):
    """Run the training CLI in-process; assert it refused with one ``error:`` line and wrote nothing.
    A config that gets through validation fails the test at once instead of training."""

    def reached_training(cfg, **kwargs):
        raise AssertionError(f"the config was accepted and training started: {cfg}")

    monkeypatch.setattr(train, "train", reached_training)
    return lambda *sets, config=QUICK: _cli_error(capsys, tmp_path, *sets, config=config)


def _cli_error(capsys, tmp_path, *sets: str, config: pathlib.Path) -> str:
    run = tmp_path / "run"
    argv = ["--config", str(config), "--run-dir", str(run), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    rc = train.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not run.exists()
    return lines[0].removeprefix("error: ")


def error(*overrides: str) -> str:
    """The one-line message of ``quick.yaml`` with ``overrides``."""
    with pytest.raises(ConfigError) as info:
        config_lib.load(QUICK, list(overrides))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def fields_of_type(*types: type) -> list[str]:
    """Dotted keys of every field (all sections, ``X | None`` included) whose type is one of ``types``."""
    keys = []

    def walk(cls: type, prefix: str) -> None:
        for name, tp in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{name}.")
            elif tp in types or (type(None) in typing.get_args(tp) and set(typing.get_args(tp)) & set(types)):
                keys.append(prefix + name)

    walk(config_lib.Config, "")
    return keys


INT_KEYS = fields_of_type(int)
FLOAT_KEYS = fields_of_type(float)


def test_field_discovery_covers_every_section():
    assert {"seed", "env.max_steps", "policy.hidden_dim", "strategy.population_size", "train.generations",
            "train.episode_steps", "distributed.num_processes", "distributed.process_id"} <= set(INT_KEYS)
    assert set(FLOAT_KEYS) == {"policy.attention_gain", "policy.action_gain", "policy.init_forget_bias",
                               "strategy.sigma_init", "strategy.learning_rate", "train.reward_power",
                               "train.fall_credit", "train.start_scale", "train.alive_bonus", "distill.lqr_above",
                               "distill.learning_rate"}


# 1. a bool is not an int (nor a float) ---------------------------------------------------------------------

def test_bool_generations_is_refused_by_the_cli(cli_error):
    msg = cli_error("train.generations=true")
    assert msg == "config key 'train.generations' has the wrong type: expected int, got True (bool)"


@pytest.mark.parametrize("key", INT_KEYS + FLOAT_KEYS)
@pytest.mark.parametrize("value", ["true", "false"])
def test_bools_are_not_numbers(key, value):
    msg = error(f"{key}={value}")
    assert msg.startswith(f"config key '{key}' has the wrong type: expected ")
    assert msg.endswith(f"got {value.title()} (bool)")


def test_optional_ints_name_null_in_the_message():
    assert error("distributed.process_id=true") == (
        "config key 'distributed.process_id' has the wrong type: expected int or null, got True (bool)")
    assert config_lib.load(QUICK, ["train.episode_steps=null"]).train.episode_steps is None
    assert config_lib.load(QUICK, ["distributed.num_processes=2"]).distributed.num_processes == 2


# 2. env.name: a cart-pole name or a registered gymnax id -------------------------------------------------

def test_unknown_env_name_is_refused_by_the_cli(capsys, tmp_path):
    """Checked where the env is built (after jax.distributed may have started), before the run directory."""
    from pinn_jax.envs import names

    msg = _cli_error(capsys, tmp_path, "env.name=NoSuchEnv-v9", config=QUICK)
    assert msg == f"config key 'env.name' must be one of {', '.join(names())}, got 'NoSuchEnv-v9'"


@pytest.mark.parametrize("name", ["CartPoleSwingUp-v0", "CartPoleSwingUp-easy", "CartPole-v1", "Catch-bsuite"])
def test_known_env_names_are_accepted(name):
    assert config_lib.load(QUICK, [f"env.name={name}"]).env.name == name


def test_a_swingup_name_and_env_start_must_agree(capsys, tmp_path):
    """CartPoleSwingUp-easy / -hard fix the start: env.start must say the same (it used to win silently)."""
    from pinn_jax.experiment import build_env

    assert _cli_error(capsys, tmp_path, "env.name=CartPoleSwingUp-easy", "env.start=hard", config=QUICK) == (
        "config keys 'env.name' and 'env.start' disagree: CartPoleSwingUp-easy starts easy, env.start is 'hard'; "
        "set env.start: easy, or use CartPoleSwingUp-v0")
    assert "CartPoleSwingUp-hard starts hard" in error_of(lambda: build_env(config_lib.EnvConfig(
        name="CartPoleSwingUp-hard", start="upright")))
    for name, start, hard in [("CartPoleSwingUp-easy", "easy", False), ("CartPoleSwingUp-hard", "hard", True),
                              ("CartPoleSwingUp-v0", "easy", False), ("CartPoleSwingUp-v0", "upright", False)]:
        params = build_env(config_lib.EnvConfig(name=name, start=start))[1]
        assert (params.hard, params.upright) == (hard, start == "upright")


def test_env_start_is_refused_off_the_swingup(capsys, tmp_path):
    from pinn_jax.experiment import build_env

    assert _cli_error(capsys, tmp_path, "env.name=Pendulum-v1", "env.start=easy", config=QUICK) == (
        "config key 'env.start' chooses the swing-up's start; Pendulum-v1 has none, so it must be 'hard' "
        "(the default), got 'easy'")
    assert build_env(config_lib.EnvConfig(name="Pendulum-v1"))[1].max_speed > 0  # the default start is fine


def test_every_shipped_config_and_agent_builds_its_env():
    """No shipped config, agent or documented stage names a start its env refuses."""
    from pinn_jax import configs
    from pinn_jax.experiment import build_env
    from pinn_jax.models import pretrained

    cfgs = [config_lib.load(n) for n in configs.available()]
    cfgs += [config_lib.from_dict(pretrained.info(n)["config"]) for n in pretrained.available()]
    cfgs += [config_lib.load(p) for p in sorted((ROOT / "docs").rglob("config.yaml"))]
    for env in {c.env for c in cfgs}:
        build_env(env)
    assert len(cfgs) > 100


def test_distributed_config_does_not_start_jax():
    """gymnax starts JAX's backend on import, which must wait for jax.distributed.initialize."""
    code = ("import sys; from pinn_jax import config as c; from jax._src import xla_bridge as xb; "
            f"c.load({str(QUICK)!r}, ['distributed.enabled=true']); "
            "print('gymnax' in sys.modules, xb.backends_are_initialized())")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


# 3. policy.hidden: a list of ints, never a string's characters ------------------------------------------

def test_string_hidden_is_refused_by_the_cli(cli_error):
    msg = cli_error("policy.hidden=abc")
    assert msg == "config key 'policy.hidden' has the wrong type: expected a list of ints, got 'abc' (str)"


@pytest.mark.parametrize("value,shown", [("[4, true]", "[4, True]"), ("[4, 2.0]", "[4, 2.0]"),
                                         ("['8']", "['8']"), ("16", "16 (int)"), ("{a: 1}", "{'a': 1}")])
def test_hidden_must_hold_only_ints(value, shown):
    msg = error(f"policy.hidden={value}")
    assert msg.startswith(f"config key 'policy.hidden' has the wrong type: expected a list of ints, got {shown}")


def test_hidden_list_becomes_a_tuple():
    assert config_lib.load(QUICK, ["policy.hidden=[8, 4]"]).policy.hidden == (8, 4)
    assert config_lib.load(QUICK, ["policy.hidden=[]"]).policy.hidden == ()


# 4. ints in range: seed a uint32 (jax.random.PRNGKey), counts int32 --------------------------------------

def test_huge_seed_is_refused_by_the_cli(cli_error):
    msg = cli_error("seed=99999999999999999999")
    assert msg == ("config key 'seed' must be <= 4294967295 (a uint32 seed for jax.random.PRNGKey), "
                   "got 99999999999999999999")


def test_seed_range():
    assert error("seed=-1") == "config key 'seed' must be >= 0 (a uint32 seed for jax.random.PRNGKey), got -1"
    assert config_lib.load(QUICK, [f"seed={2**32 - 1}"]).seed == 2**32 - 1


@pytest.mark.parametrize("key", ["train.generations", "train.rollouts", "strategy.population_size", "env.max_steps",
                                 "train.episode_steps", "train.eval_episodes", "policy.hidden_dim"])
def test_counts_must_fit_in_int32(key):
    assert error(f"{key}={2**31}") == f"config key '{key}' must be <= 2147483647 (int32), got 2147483648"


def test_count_at_the_int32_limit_is_accepted():
    assert config_lib.load(QUICK, [f"train.generations={2**31 - 1}"]).train.generations == 2**31 - 1


def test_hidden_sizes_must_fit_in_int32():
    assert error(f"policy.hidden=[4, {2**31}]") == (
        "config key 'policy.hidden' must be <= 2147483647 (int32), got 2147483648")


# 5. floats: numbers or numeric strings (PyYAML reads 3e-4 as a string), finite where positive ------------

def test_numeric_strings_are_floats(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("strategy: {sigma_init: 3e-4, learning_rate: 1e30}\npolicy: {attention_gain: 2}\n")
    cfg = config_lib.load(p)
    assert (cfg.strategy.sigma_init, cfg.strategy.learning_rate, cfg.policy.attention_gain) == (3e-4, 1e30, 2.0)
    assert all(type(x) is float for x in (cfg.strategy.sigma_init, cfg.policy.attention_gain))


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_numeric_string_float_is_a_wrong_type(key):
    expected = "float or null" if key == "distill.lqr_above" else "float"
    assert error(f"{key}=abc") == f"config key '{key}' has the wrong type: expected {expected}, got 'abc' (str)"


@pytest.mark.parametrize("key", [k for k in FLOAT_KEYS  # any finite value; a share in [0, 1]; a cosine; >= 0
                                 if k not in ("policy.init_forget_bias", "train.fall_credit", "distill.lqr_above",
                                              "train.alive_bonus")])
@pytest.mark.parametrize("value,shown", [(".nan", "nan"), (".inf", "inf"), ("1e400", "inf"), ("-.inf", "-inf"),
                                         ("0", "0.0")])
def test_positive_floats_must_be_finite(key, value, shown):
    assert error(f"{key}={value}") == f"config key '{key}' must be a finite number > 0, got {shown}"


@pytest.mark.parametrize("value,shown", [(".nan", "nan"), (".inf", "inf"), ("-0.1", "-0.1"), ("1.5", "1.5")])
def test_fall_credit_is_a_share(value, shown):
    assert error(f"train.fall_credit={value}") == f"config key 'train.fall_credit' must be in [0, 1], got {shown}"


def test_nan_sigma_is_refused_by_the_cli(cli_error):
    msg = cli_error("strategy.sigma_init=nan")
    assert msg == "config key 'strategy.sigma_init' must be a finite number > 0, got nan"


# 6. the file itself: not empty, a mapping at the top ----------------------------------------------------

@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n", "{}\n"])
def test_empty_config_file_is_refused_by_the_cli(cli_error, tmp_path, text):
    p = tmp_path / "empty.yaml"
    p.write_text(text)
    msg = cli_error(config=p)
    assert msg.startswith(f"config file {p} is empty ")


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("42\n", "int"), ("just words\n", "str")])
def test_non_mapping_config_file_is_refused_by_the_cli(cli_error, tmp_path, text, kind):
    p = tmp_path / "odd.yaml"
    p.write_text(text)
    msg = cli_error(config=p)
    assert msg == f"config file {p} must hold a mapping of sections and keys, got {kind}"


def test_from_dict_still_takes_partial_and_empty_mappings():
    assert config_lib.from_dict({}) == config_lib.Config()
    assert config_lib.from_dict({"train": {"generations": 3}}).train.generations == 3


# 7. policy.name: the names pinn_jax.policies knows ---------------------------------------------------------

def test_policy_names_come_from_the_policies_module():
    from pinn_jax import policies

    assert config_lib.POLICY_NAMES is policies.POLICY_NAMES
    assert error("policy.name=cnn") == (
        f"config key 'policy.name' must be one of {', '.join(policies.POLICY_NAMES)}, got 'cnn'")
    for name in policies.POLICY_NAMES:
        assert config_lib.load(QUICK, [f"policy.name={name}"]).policy.name == name


def test_policy_defaults_are_the_policy_classes_own():
    """PolicyConfig's defaults are read from the policy dataclasses: changed there (before the config module is
    imported), they change here. Every attention-neuron and vision config field is covered."""
    from pinn_jax import policies

    changed = {"hidden_dim": 3, "msg_dim": 5, "pos_em_dim": 7, "scale": True, "attention_gain": 2.5,
               "action_gain": 3.5, "head_layers": 2, "init_forget_bias": 1.5}
    vision = {"frames": 3, "grid": 5, "query_dim": 6, "key_dim": 4, "value_dim": 3, "head_hidden": 7, "key_frame": True}
    assert set(changed) == set(policies.REGISTRY["attention_neuron"].fields)
    assert set(vision) == set(policies.REGISTRY["vision_attention"].fields)
    code = ("from pinn_jax.policies import AttentionNeuronPolicy as A, MLPPolicy as M, VisionAttentionPolicy as V\n"
            + "".join(f"A.{k} = {v!r}\n" for k, v in changed.items()) + "M.hidden = (9, 4)\n"
            + "".join(f"V.{k} = {v!r}\n" for k, v in vision.items())
            + "import json; from pinn_jax.config import PolicyConfig\n"
            "print(json.dumps(PolicyConfig().__dict__))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"name": "attention_neuron", "hidden": [9, 4], **changed, **vision}
    plain = config_lib.PolicyConfig()
    assert plain.hidden == policies.MLPPolicy().hidden
    assert all(getattr(plain, k) == getattr(policies.AttentionNeuronPolicy(), k) for k in changed)
    assert all(getattr(plain, k) == getattr(policies.VisionAttentionPolicy(), k) for k in vision)


def test_bad_policy_name_is_refused_by_the_cli(cli_error):
    assert cli_error("policy.name=cnn").startswith("config key 'policy.name' must be one of ")


# what worked before still works ---------------------------------------------------------------------------

def test_round_trip_through_to_dict():
    cfg = config_lib.load(QUICK, ["policy.hidden=[8, 8]", "strategy.sigma_init=3e-4", "train.episode_steps=50"])
    assert config_lib.from_dict(cfg.to_dict()) == cfg


def test_bad_override_yaml_is_one_line():
    msg = error("policy.hidden=[1,")
    assert msg.startswith("override 'policy.hidden=[1,': the value is not valid YAML")


# shipped configs by name -------------------------------------------------------------------------------

def test_shipped_configs_resolve_by_name_and_all_validate():
    from pinn_jax import configs

    names = configs.available()
    assert {"quick", "cartpole_pi", "cartpole_mlp"} <= set(names)
    assert config_lib.load("quick") == config_lib.load(QUICK) == config_lib.load("quick.yaml")
    for name in names:
        assert configs.resolve(name) == configs.HERE / f"{name}.yaml"
        config_lib.load(name)  # every shipped config is valid
        assert configs.describe(name), f"{name}.yaml has no first comment line saying what it trains"
    assert (ROOT / "configs").resolve() == configs.HERE  # the checkout's configs/ is the package's folder


def test_an_unknown_config_name_lists_the_shipped_ones():
    msg = error_of(lambda: config_lib.load("no_such_config"))
    assert msg.startswith("config file not found: no_such_config (nor a shipped config of that name; shipped: ")
    assert "cartpole_pi, " in msg and "quick" in msg


def error_of(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)
