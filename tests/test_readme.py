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


def test_the_first_run_paragraph_quotes_what_the_quick_run_prints(tmp_path):
    """The README quotes the quick run's closing line as train.py words it (the held-out numbers of the deterministic
    run, fed back through the same function), and its settings are quick.yaml's, as the guide's row says them."""
    import yaml

    from pinn_jax import config as config_lib
    from pinn_jax.train import _held_out_summary

    text = " ".join((REPO / "README.md").read_text().split())
    quoted = re.search(r"`(held-out return of the search mean over [^`]*)`", text).group(1)
    m = re.fullmatch(r"held-out return of the search mean over (\d+) episodes: (\d+\.\d) at generation (\d+) -> best "
                     r"(\d+\.\d) ± (\d+\.\d) \(s\.e\.\) at generation (\d+)", quoted)
    assert m, quoted
    episodes, first, first_gen, best, sem, best_gen = m.groups()
    cfg = config_lib.from_dict({**config_lib.load("quick").to_dict(), "run_dir": str(tmp_path)})
    assert int(episodes) == cfg.train.eval_episodes and int(first_gen) == cfg.train.eval_every
    assert int(best_gen) % cfg.train.eval_every == 0 and int(best_gen) <= cfg.train.generations
    std = float(sem) * (int(episodes) - 1) ** 0.5
    from pinn_jax.training.metrics import EVAL_COLUMNS

    rows = [{"generation": first_gen, "return_mean": first, "return_std": 0},
            {"generation": best_gen, "return_mean": best, "return_std": std}]
    (tmp_path / "eval.csv").write_text(",".join(EVAL_COLUMNS) + "\n" + "".join(
        ",".join(str(r.get(c, 0)) for c in EVAL_COLUMNS) + "\n" for r in rows))
    assert _held_out_summary(cfg).startswith(quoted + " (kept in eval_best.npz)")
    guide = (REPO / "docs" / "guide.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| `quick.yaml`"))
    data = yaml.safe_load((REPO / "pinn_jax" / "configs" / "quick.yaml").read_text())
    assert f"{data['env']['start']}, {data['env']['max_steps']} steps" in row
    assert (f"pop {data['strategy']['population_size']} × {data['train']['rollouts']} rollouts × "
            f"{data['train']['generations']} generations") in row
    assert f"{data['env']['max_steps']}-step episodes" in text and f"plays {episodes} held-out episodes" in text


def test_the_readme_installs_what_training_needs_and_its_test_command_shows_skip_reasons():
    """The first command installs the package alone; the test command (one line, run verbatim by .ci/run) installs
    the dev extras and lists skipped tests with their reasons."""
    text = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)
    assert "pip install -e . &&" in first and "[dev]" not in first and "pinn_jax.train --config quick" in first
    test_command = re.search(r"<!-- test-command -->\n```bash\n(.*?)\n```", text, re.S).group(1)
    assert "\n" not in test_command and "'.[dev]'" in test_command and " -rs" in test_command
    assert re.search(r"in about \d+ minutes on 2 CPU cores", text)
