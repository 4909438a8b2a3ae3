"""The probe sweep of issue 38 on the reading side of the least covered commands (curves, pretrained
list/export/export-student, demo, study, distill, pycma_reference): a directory where a file is meant, values
that parse but mean nothing (nan, rows out of order), a table without the column a command reads, metadata of the
wrong shape. Each is one ``error:`` line (exit 2) or a one-line warning, never a traceback nor a silent wrong
result. The rest of the sweep (torn, empty, garbage, non-UTF-8 files, missing ones) was already refused in one
line and is covered in tests/test_integrity.py."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from conftest import tiny_dict

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.errors import ConfigError, ModelError, RunDirError
from pinn_jax.experiment import setup
from pinn_jax.models import load_model, pretrained
from pinn_jax.study import curves
from pinn_jax.training.metrics import COLUMNS, EVAL_COLUMNS, read_csv


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def finished_run(where: pathlib.Path) -> pathlib.Path:
    """What a finished tiny run leaves that the readers look at: config, params.npz, metrics.csv, eval.csv."""
    where.mkdir(parents=True)
    artifacts.write_config(where, tiny_dict(str(where)))
    n = setup(config_lib.from_dict(tiny_dict(str(where)))).num_params
    artifacts.save_run_params(where, np.ones(n), np.zeros(n))
    (where / artifacts.METRICS_FILE).write_text(",".join(COLUMNS) + "\n" + "".join(
        f"{g},3,2,1,0.5,3,1,{g}\n" for g in (1, 2, 3)))
    (where / artifacts.EVAL_FILE).write_text(",".join(EVAL_COLUMNS) + "\n2,5,1,5,4,6,2\n3,6,1,6,5,7,3\n")
    return where


def draw(run: pathlib.Path, capsys) -> str:
    assert curves.main(["--run", f"a={run}", "--out", str(run.parent / "c.png")]) == 2
    return one_error_line(capsys)


def test_a_directory_where_a_log_is_meant_is_one_line(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    (run / artifacts.EVAL_FILE).unlink()
    (run / artifacts.EVAL_FILE).mkdir()  # was: IsADirectoryError's traceback
    assert draw(run, capsys) == f"{run / artifacts.EVAL_FILE} cannot be read (Is a directory)"
    (run / artifacts.METRICS_FILE).unlink()
    (run / artifacts.METRICS_FILE).mkdir()
    assert pretrained.main(["export", str(run), "probe", "--out", str(tmp_path / "ship")]) == 2
    assert one_error_line(capsys) == f"{run / artifacts.METRICS_FILE} cannot be read (Is a directory)"


@pytest.mark.parametrize("row, wrong", [("4,nan,1,5,4,6,4", "'nan' is not a finite number"),
                                        ("4,6,1,6,5,7,inf", "'inf' is not a finite number"),
                                        ("1,9,1,9,9,9,1", "generation 1 after 3 (rows out of order or repeated)"),
                                        ("3,9,1,9,9,9,4", "generation 3 after 3 (rows out of order or repeated)")])
def test_a_log_row_that_parses_but_means_nothing_is_refused(tmp_path, capsys, row, wrong):
    run = finished_run(tmp_path / "run")  # was: drawn, "best held-out nan at generation 4 (inf h)", or "of 1"
    with (run / artifacts.EVAL_FILE).open("a") as f:
        f.write(row + "\n")
    with pytest.raises(RunDirError, match="line 4"):
        read_csv(run, artifacts.EVAL_FILE)
    assert draw(run, capsys) == f"{run / artifacts.EVAL_FILE} line 4: {wrong}"


def test_a_config_yaml_that_is_a_directory_is_not_taken_for_no_config(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    artifacts.config_file(run).unlink()
    artifacts.config_file(run).mkdir()  # curves drew it as a run without a config; others said "no config.yaml"
    assert draw(run, capsys) == f"config file {artifacts.config_file(run)} cannot be read: Is a directory"
    with pytest.raises(ModelError, match=r"config\.yaml cannot be read: Is a directory$"):
        load_model(str(run))
    with pytest.raises(ConfigError, match=f"^config file {tmp_path} is a directory, not a YAML file$"):
        config_lib.load(tmp_path)  # was: "config file not found"


def test_a_directory_or_nan_where_parameters_are_meant_is_one_line_naming_it(tmp_path):
    run = finished_run(tmp_path / "run")
    params = run / artifacts.PARAMS_FILE
    n = setup(config_lib.from_dict(tiny_dict(str(run)))).num_params
    for flat in ([np.nan] + [0.0] * (n - 1), [np.inf] * n):
        artifacts.save_run_params(run, flat, flat)
        with pytest.raises(ModelError, match=f"^{params}: 'mean' holds {1 if np.isnan(flat[0]) else n} values that "
                                             f"are not finite"):
            load_model(str(run))  # was: loaded, nan parameters
        with pytest.raises(ModelError, match="not finite"):
            load_model(str(params))
    params.unlink()
    params.mkdir()
    with pytest.raises(ModelError, match=f"^{params} is a directory, not an .npz file$"):
        load_model(str(params))  # was: "parameter file not found"
    with pytest.raises(ModelError, match=f"^{params} is a directory, not an .npz file$"):
        load_model(str(run))  # was: "no checkpoints in RUN/checkpoints"


def test_export_refuses_a_run_whose_log_cannot_date_its_parameters(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    (run / artifacts.METRICS_FILE).write_text(",".join(COLUMNS) + "\n")  # was: shipped as "generations": 0
    assert pretrained.main(["export", str(run), "probe", "--out", str(tmp_path / "ship")]) == 2
    assert one_error_line(capsys) == f"{run} has no metrics.csv rows to tell the generation of its params.npz"
    assert not (tmp_path / "ship" / "probe.npz").exists()


def test_export_student_refuses_a_log_without_the_columns_it_reads(tmp_path, capsys):
    d = tmp_path / "distill"
    run = finished_run(tmp_path / "run")
    (d / artifacts.ROUNDS_DIR).mkdir(parents=True)
    shutil.copy(artifacts.config_file(run), artifacts.config_file(d))
    artifacts.save_flat(artifacts.round_file(d, 0), np.zeros(3))
    for text, wrong in (("round,loss\n0,1\n", f"{d / artifacts.DISTILL_LOG} has no column wall_time in its header "
                                                f"line"),  # was: KeyError's traceback
                        ("round,loss,wall_time\n", f"{d / artifacts.DISTILL_LOG} holds no rounds")):  # was: round -1
        (d / artifacts.DISTILL_LOG).write_text(text)
        assert pretrained.main(["export-student", str(d), "probe", "--out", str(tmp_path / "ship")]) == 2
        assert one_error_line(capsys) == wrong


@pytest.mark.parametrize("evaluation", [{"no_shuffle": [1.0], "episodes": 10},
                                        {"no_shuffle": [1.0, 2.0], "episodes": "ten"},
                                        {"shuffle": [1.0, 2.0]}, "good"])
def test_pretrained_list_names_a_model_with_a_bad_evaluation_and_lists_the_rest(tmp_path, capsys, monkeypatch,
                                                                                evaluation):
    for name in ("cartpole_pi", "cartpole_mlp"):
        for f in artifacts.agent_files(artifacts.SHIPPED_DIR, name):
            shutil.copy(f, tmp_path / f.name)
    meta = json.loads((tmp_path / "cartpole_pi.json").read_text())
    (tmp_path / "cartpole_pi.json").write_text(json.dumps({**meta, "evaluation": evaluation}))
    monkeypatch.setattr(artifacts, "SHIPPED_DIR", tmp_path)
    assert pretrained.main(["list"]) == 0  # was: ValueError, TypeError or AttributeError's traceback
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == ["cartpole_mlp"]
    assert err.strip() == (f"warning: skipped cartpole_pi: {tmp_path / 'cartpole_pi.json'}: 'evaluation' must map "
                           f"no_shuffle or shuffle to [mean, std] over a whole number of episodes")
