"""The README's Python block runs as a file from a clean folder: training on a user-defined gymnax env, then a
shipped agent evaluated shuffled."""

from __future__ import annotations

import csv
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def python_block() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- python-api -->\n```python\n(.*?)\n```", text, re.S)
    assert match, "README.md has no Python block after <!-- python-api -->"
    return match.group(1)


def test_the_readme_python_block_runs_from_a_clean_folder(tmp_path):
    code = python_block()
    assert len(code.splitlines()) <= 25 and "class " in code and "pinn_jax.fit(" in code
    (tmp_path / "example.py").write_text(code)
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    first, second = r.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"generation 10: best fitness \d+\.\d, \d+ parameters", first), first
    # the run is a real run directory of the user's env: ten generations logged, two held-out evaluations
    with open(tmp_path / "runs" / "long-pole" / "metrics.csv") as f:
        assert [int(float(r["generation"])) for r in csv.DictReader(f)] == list(range(1, 11))
    with open(tmp_path / "runs" / "long-pole" / "eval.csv") as f:
        assert [int(float(r["generation"])) for r in csv.DictReader(f)] == [5, 10]
    mean = float(re.fullmatch(r"pretrained:cartpole_pi_catch, inputs shuffled: (\d+\.\d) ± \d+\.\d \(s\.e\.\) "
                              r"over 16 episodes", second).group(1))
    assert mean > 200  # the attention neuron keeps swinging up with its inputs shuffled


def test_the_user_env_is_what_was_trained(tmp_path):
    """The env object replaces the config's: a longer pole changes the training fitness of the same search."""
    import jax
    from gymnax.environments.classic_control import CartPole

    from pinn_jax import config as config_lib
    from pinn_jax.experiment import setup
    from pinn_jax.training.trainer import make_trainer

    class LongPole(CartPole):
        @property
        def default_params(self):
            return super().default_params.replace(length=0.8)

    cfg = config_lib.load("cartpole_v1_pi", ["strategy.population_size=8", "train.rollouts=2", "policy.name=linear"])
    fitness = {}
    for name, env in (("registry", None), ("own", LongPole())):
        tr = make_trainer(setup(cfg, env=env))
        assert float(tr.env_params.length) == (0.8 if env else 0.5)
        fitness[name] = jax.device_get(tr.run(tr.init(key=jax.random.PRNGKey(0)), 1)[1]["fitness_mean"])
    assert fitness["registry"] != fitness["own"]


def test_import_pinn_jax_starts_nothing_and_gives_the_api_lazily():
    code = ("import sys, pinn_jax\nfrom jax._src import xla_bridge as xb\n"
            "assert not xb._backends and 'pinn_jax.train' not in sys.modules\n"
            "cfg = pinn_jax.load_config('quick')\nfit = pinn_jax.fit\n"
            "assert not xb._backends, 'the training entry must not start JAX before jax.distributed'\n"
            "assert callable(fit) and callable(pinn_jax.evaluate) and callable(pinn_jax.make_env)\n"
            "print(' '.join(sorted(pinn_jax.__all__)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(["Config", "Model", "Policy", "UserError", "__version__", "condition", "evaluate",
                                       "fit", "load_config", "load_model", "make_env"])


def test_an_object_that_is_not_a_policy_is_one_config_error(tmp_path):
    import pytest

    from pinn_jax import config as config_lib
    from pinn_jax.errors import ConfigError
    from pinn_jax.experiment import setup

    with pytest.raises(ConfigError, match=r"^policy: object does not meet the Policy protocol"):
        setup(config_lib.load("quick"), policy=object())
