"""File names are defined once, in pinn_jax.artifacts: no other module types one, and what the writers leave
on disk is named by it."""

from __future__ import annotations

import ast
import pathlib
import re

import numpy as np

from pinn_jax import artifacts
from pinn_jax.models import pretrained
from pinn_jax.training.metrics import COLUMNS, EVAL_COLUMNS, MetricsWriter, read_csv

PACKAGE = pathlib.Path(artifacts.__file__).parent
FILE_NAME = re.compile(r"^[a-z0-9_]+\.(csv|npz|json|yaml|md|png)$")  # not placeholders (FILE.npz)
ELSEWHERE = {  # file names that stay outside artifacts.py, and why
    "models/official.py": {"model.npz"},  # the authors' own file, in their repository and in our cache
}


def _file_name_literals(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and FILE_NAME.match(node.value)}


def test_no_module_but_artifacts_types_a_file_name():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        names = _file_name_literals(path) - ELSEWHERE.get(rel, set())
        if names and rel != "artifacts.py":
            found[rel] = sorted(names)
    assert found == {}
    assert {"metrics.csv", "eval.csv", "report.json", "pycma.csv"} <= _file_name_literals(PACKAGE / "artifacts.py")


def test_a_runs_logs_are_the_names_artifacts_gives(tmp_path):
    writer = MetricsWriter(tmp_path, tables=("train", "eval"))
    writer.write(dict.fromkeys(COLUMNS, 2.0))
    writer.write(dict.fromkeys(EVAL_COLUMNS, 3.0), table="eval")
    writer.close()
    assert {p.name for p in tmp_path.iterdir()} == {artifacts.METRICS_FILE, artifacts.EVAL_FILE, artifacts.TB_DIR}
    assert read_csv(tmp_path)[0]["fitness_max"] == 2.0
    assert read_csv(tmp_path, artifacts.EVAL_FILE)[0]["return_mean"] == 3.0


def test_a_shipped_agent_is_its_two_files(tmp_path):
    params, meta = artifacts.agent_files(tmp_path, "agent")
    assert (params.name, meta.name) == ("agent.npz", "agent.json")
    assert pretrained._ship(tmp_path, "agent", np.arange(3.0), {"note": 1}) == params
    assert artifacts.load_flat(params).tolist() == [0.0, 1.0, 2.0] and meta.read_text().strip() == '{\n  "note": 1\n}'
    name = "cartpole_pi"
    assert (artifacts.shipped_file(name), artifacts.shipped_meta_file(name)) == artifacts.agent_files(
        artifacts.SHIPPED_DIR, name)
    assert pretrained.info(name)["config"]["policy"]["name"] == "attention_neuron"
