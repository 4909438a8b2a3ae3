"""The tour notebooks (notebooks/*.ipynb) run top to bottom and are stored stripped.

Each notebook is executed with nbclient on a ``python3`` kernel running this interpreter, in a
temporary working directory (its ``tempfile`` folders there too, through ``TMPDIR``), with
``PINN_JAX_NOTEBOOK_SMALL=1`` (tiny sizes) and ``MPLBACKEND=Agg``. Besides "no cell raised", the
tests check what each notebook's final summary cell prints (a JSON object) and its outputs.
About a minute per notebook on 2 quiet CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import re
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAMES = ("quickstart", "permutation_invariance", "benchmark")
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB = "https://colab.research.google.com/github/pinn-jax/pinn_jax/blob/main/notebooks/{}.ipynb"


# ------------------------------------------------------------------------------ stored notebooks
def _code(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_stripped_and_colab_ready(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{name}.ipynb cell {i} has an execution count"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert f"[![Open In Colab]({BADGE})]({COLAB.format(name)})" in first.source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert 'REPO_URL = "https://github.com/pinn-jax/pinn_jax"' in code[0]
    assert 'PINN_JAX = f"git+{REPO_URL}"' in code[0] and 'importlib.util.find_spec("pinn_jax") is None' in code[0]
    assert 'SMALL = os.environ.get("PINN_JAX_NOTEBOOK_SMALL", "1") == "1"' in code[1]
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_notebooks_match_their_generator():
    spec = importlib.util.spec_from_file_location("_notebooks_build", NB_DIR / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert set(build.NOTEBOOKS) == set(NAMES)
    assert all((NB_DIR / f"{name}.py").is_file() for name in NAMES), "every notebook has a percent source NAME.py"
    assert build.main(["--check"]) == 0, "notebooks/*.ipynb differ from their sources notebooks/NAME.py: run _build.py"


# ------------------------------------------------------------------------------------ execution
def _kernel_name(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``python3``, resolved to a kernel that runs this interpreter (the venv's python).

    The spec ipykernel installs says ``python``, which jupyter_client replaces by
    ``sys.executable``. If ``python3`` is missing or names another interpreter (e.g. a user-wide
    spec), a private spec pointing at ``sys.executable`` is put first on ``JUPYTER_PATH``.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    plain = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
        ok = argv0 in plain or os.path.realpath(argv0) == os.path.realpath(sys.executable)
    except NoSuchKernel:
        ok = False
    if not ok:
        spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (pinn_jax tests)", "language": "python"}))
        old = os.environ.get("JUPYTER_PATH")
        monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "jupyter"), *([old] if old else [])]))
    return "python3"


def _execute(name: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``notebooks/NAME.ipynb`` in ``tmp_path/work``; return (executed notebook, work dir, summary)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = NB_DIR / f"{name}.ipynb"
    stored = path.read_bytes()
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    kernel = _kernel_name(tmp_path, monkeypatch)
    monkeypatch.setenv("PINN_JAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp))  # the notebooks' tempfile.mkdtemp() folders
    nb = nbformat.reads(stored.decode(), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{name}.ipynb: a cell raised\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}.ipynb: error outputs {[(o.ename, o.evalue) for o in errors]}"
    assert path.read_bytes() == stored, f"executing {name}.ipynb changed the stored file"
    assert not any(work.iterdir()), f"{name}.ipynb wrote into its working directory: {list(work.iterdir())}"
    return nb, tmp, _summary(nb)


def _stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _all_stdout(nb) -> str:
    return "\n".join(_stdout(c) for c in nb.cells if c.cell_type == "code")


def _summary(nb) -> dict:
    """The JSON object that the last code cell prints."""
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    return json.loads(_stdout(last))


def _mimes(nb) -> list[str]:
    return [m for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("display_data", "execute_result") for m in o.get("data", {})]


def _inside(path: str, folder: pathlib.Path) -> pathlib.Path:
    p = pathlib.Path(path)
    assert p.is_file(), f"{p} was not written"
    assert p.resolve().is_relative_to(folder.resolve()), f"{p} is outside the test's temporary folder"
    return p


@pytest.mark.slow
def test_quickstart_runs(tmp_path, monkeypatch):
    nb, tmp, s = _execute("quickstart", tmp_path, monkeypatch)
    assert s["num_params"] == 913
    assert s["generations"] >= 1
    assert math.isfinite(s["final_fitness_mean"]) and math.isfinite(s["final_best_so_far"])
    gif = _inside(s["gif"], tmp)
    data = gif.read_bytes()
    assert data[:4] == b"GIF8" and len(data) == s["gif_bytes"] > 1000
    mimes = _mimes(nb)
    assert "image/gif" in mimes, "the rollout GIF is not displayed inline"
    assert mimes.count("image/png") >= 2, "expected the rendered frames and the fitness curve"
    # the printed training table has one row per generation, with finite numbers
    rows = re.findall(r"^\s*(\d+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+([\d.]+)$", _all_stdout(nb), re.M)
    assert [int(r[0]) for r in rows] == list(range(1, s["generations"] + 1))


@pytest.mark.slow
def test_permutation_invariance_runs(tmp_path, monkeypatch):
    nb, tmp, s = _execute("permutation_invariance", tmp_path, monkeypatch)
    out = _all_stdout(nb)
    pi, mlp = "attention neuron", "MLP"
    # the shuffled and unshuffled mean returns are printed, for both models
    for model in (pi, mlp):
        m = re.search(rf"^{model}: mean return unshuffled (-?[\d.]+), shuffled (-?[\d.]+)$", out, re.M)
        assert m, f"mean returns of {model} not printed"
        for cond, printed in zip(("no_shuffle", "shuffle"), m.groups()):
            assert math.isfinite(s["mean_return"][model][cond])
            assert float(printed) == pytest.approx(s["mean_return"][model][cond], abs=0.051)
    # the attention neuron's first action does not depend on the feature order
    first = s["first_action"][pi]
    assert first["abs_diff"] <= 1e-5 and first["unshuffled"] == pytest.approx(first["shuffled"], abs=1e-5)
    assert re.search(rf"{pi} first action: unshuffled [-+][\d.]+  shuffled [-+][\d.]+", out)
    assert first["steps_equal"] >= 1
    # as the narrative says: the MLP's actions part (its first ones may coincide, saturated), long before the
    # attention neuron's do, if they do at all
    assert s["first_action"][mlp]["steps_equal"] < s["first_action"][mlp]["steps"]
    assert first["steps_equal"] > s["first_action"][mlp]["steps_equal"]
    # noise features: the attention neuron runs them, the MLP is n/a
    noise = [c for c in s["mean_return"][pi] if c.startswith("noise_")]
    assert noise
    for c in noise:
        assert math.isfinite(s["mean_return"][pi][c])
        assert s["mean_return"][mlp][c] == "n/a"
    # any number of features for the attention neuron; the MLP raised
    actions = s["any_number_of_features"]
    assert set(actions) == {"1", "3", "5", "12", "40"}
    assert all(math.isfinite(a) and -1.0 <= a <= 1.0 for a in actions.values())
    assert s["permuted_12_features"] == pytest.approx(actions["12"], abs=1e-5)
    assert s["mlp_error"].startswith("ValueError: ") and "size 5" in s["mlp_error"]
    assert "MLP with 12 features raised ValueError" in out
    # the study's figures and the attention heatmap were written and shown
    figures = [_inside(f, tmp) for f in s["figures"]]
    assert {f.name for f in figures} >= {"returns_box.png", "attention.png"}
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert _mimes(nb).count("image/png") >= len(figures) + 1


@pytest.mark.slow
def test_benchmark_runs(tmp_path, monkeypatch):
    nb, tmp, s = _execute("benchmark", tmp_path, monkeypatch)
    report = json.loads(_inside(s["report"], tmp).read_text())
    assert report["backend"] == s["backend"]
    results = report["results"]
    assert {r["policy"] for r in results} == {"attention_neuron", "mlp"}
    assert len({r["population"] for r in results}) >= 3, "a scaling curve needs several population sizes"
    for r in results:
        assert math.isfinite(r["gens_per_sec"]) and r["gens_per_sec"] > 0
        assert r["steps_per_sec"] == pytest.approx(r["gens_per_sec"] * r["population"] * r["rollouts"] * r["max_steps"])
        assert min(r["times"]) <= r["sec_per_gen"] <= max(r["times"])
    assert len(s["gens_per_sec"]) == len(results)
    assert "image/png" in _mimes(nb), "the scaling plot is not shown"
