"""A user with only the wheel: built from this checkout, installed into a fresh venv outside the repository,
it trains ``--config quick`` and lists the shipped agents (configs and agents ship in the package).

The fresh venv gets the already-installed dependencies through a ``.pth`` line (no download, no copy of
this checkout on its path), so the package itself can only come from the wheel."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PINN_JAX_REFERENCE_DIR")}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout and reuses nothing from it
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "runs", "out", "bench_results", "*.egg-info", "__pycache__", ".pytest_cache"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(source)],
        cwd=tmp)
    wheel = next(tmp.glob("pinn_jax-*.whl"))
    env = tmp / "venv"
    run([sys.executable, "-m", "venv", str(env)], cwd=tmp)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_pinn_jax_test_deps.pth").write_text("\n".join(deps) + "\n")  # dependencies, not pinn_jax
    run([str(env / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp)
    return env


def test_the_installed_wheel_is_the_package_and_holds_configs_agents_and_licence(venv):
    code = ("import pinn_jax, pinn_jax.configs as c, pinn_jax.models.pretrained as p; print(pinn_jax.__file__); "
            "print(len(c.available()), len(p.available()))")
    out = run([str(venv / "bin" / "python"), "-c", code], cwd=venv.parent).stdout.split()
    assert out[0].startswith(str(venv)), out  # not this checkout
    assert int(out[1]) >= 10 and int(out[2]) >= 15
    licences = list(venv.glob("lib/python*/site-packages/pinn_jax-*.dist-info/**/LICENSE*"))
    assert licences and "Apache License" in licences[0].read_text()


def test_quick_training_and_pretrained_list_from_the_wheel(venv):
    run_dir = venv.parent / "run"
    out = run([str(venv / "bin" / "pinn-train"), "--config", "quick", "--out", str(run_dir), "--no-progress",
               "--set", "train.generations=4", "--set", "train.eval_every=2", "--set", "strategy.population_size=8",
               "--set", "train.rollouts=2", "--set", "env.max_steps=50"], cwd=venv.parent)
    assert "done: generation 4" in out.stdout and "held-out return" in out.stdout
    assert (run_dir / "params.npz").is_file() and (run_dir / "eval_best.npz").is_file()
    listed = run([str(venv / "bin" / "pinn-pretrained"), "list"], cwd=venv.parent).stdout
    assert "cartpole_pi_catch: attention_neuron (913 parameters)" in listed
    error = subprocess.run([str(venv / "bin" / "pinn-evaluate"), "official"], cwd=venv.parent, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PINN_JAX_CACHE_DIR": str(venv.parent / "cache")}
                           | {"PINN_JAX_REFERENCE_DIR": ""})
    assert error.returncode == 2 and "fetch-official" in error.stderr and len(error.stderr.strip().splitlines()) == 1
