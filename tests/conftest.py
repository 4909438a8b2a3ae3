"""Shared test set-up: where the authors' reference weights are, a private cache, and the tiny configs."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys

import pytest

from pinn_jax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = pathlib.Path(__file__).resolve().parent
# Only tests and CI name ../shared: the package finds the authors' weights through this variable.
os.environ.setdefault("PINN_JAX_REFERENCE_DIR", str(REPO.parent / "shared" / "reference"))
sys.path.insert(0, str(TESTS))  # tests/_dist_worker.py, run as a script by test_distributed.py, imports this too


def reference_weights() -> pathlib.Path:
    """Where the tests look for the authors' released weights (``$PINN_JAX_REFERENCE_DIR``)."""
    return pathlib.Path(os.environ["PINN_JAX_REFERENCE_DIR"]) / "attentionneuron_cartpole" / "model.npz"


def pytest_report_header(config) -> str:
    """Say up front whether the tests that need the authors' weights will run (a fresh clone has none)."""
    path = reference_weights()
    if path.is_file():
        return f"authors' reference weights: {path}"
    return (f"authors' reference weights absent ({path}): the tests that score them are skipped "
            f"(set PINN_JAX_REFERENCE_DIR to a folder holding attentionneuron_cartpole/model.npz)")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Never read or write the user's cache (pinn_jax.models.official) from tests."""
    os.environ["PINN_JAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """The host loop's process set-up, for tests that build trainers directly: CMA-ES's eigh on one BLAS thread."""
    from pinn_jax.training.process import limit_lapack_threads

    limit_lapack_threads()


def tiny_dict(run_dir: str, **sections) -> dict:
    """The tiny config of the tests as a plain mapping: linear policy, pop 8, 2 rollouts of 50 steps."""
    data = {
        "seed": 3, "run_dir": str(run_dir),
        "env": {"start": "easy", "max_steps": 50},
        "policy": {"name": "linear"},
        "strategy": {"name": "CMA_ES", "population_size": 8, "sigma_init": 0.5},
        "train": {"generations": 3, "rollouts": 2, "log_every": 1, "checkpoint_every": 2},
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return data


@pytest.fixture
def tiny(tmp_path):
    """A seconds-sized training config in a fresh run directory (``tiny_dict``, validated)."""
    return lambda **sections: config_lib.from_dict(tiny_dict(str(tmp_path / "run"), **sections))


@contextlib.contextmanager
def counting_traces():
    """Count, from outside the trainer, how often a trainer built inside the block traces its generation body:
    ``with counting_traces() as traces: tr = make_trainer(...)`` then ``len(traces)`` after the calls."""
    from pinn_jax.training import trainer as trainer_lib

    traces: list[int] = []
    real = trainer_lib.make_generation

    def counted(*args, **kwargs):
        generation = real(*args, **kwargs)

        def body(state, x):
            traces.append(1)  # a Python side effect: runs only while tracing
            return generation(state, x)
        return body

    trainer_lib.make_generation = counted
    try:
        yield traces
    finally:
        trainer_lib.make_generation = real
