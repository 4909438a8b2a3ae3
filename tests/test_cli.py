"""The command-line convention shared by every entry point: --seed and --out, defaults in --help, one-line
errors (exit 2), console scripts, and no JAX backend started by importing the training CLI."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pinn_jax import train
from pinn_jax.models import pretrained
from pinn_jax.study import across_envs as study
from pinn_jax.study import diagnose, evaluate
from pinn_jax.tools import bench, distill

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train": train.main, "evaluate": evaluate.main, "diagnose": diagnose.main, "distill": distill.main,
                "bench": bench.main, "study": study.main}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_takes_seed_and_out_and_shows_defaults(name, capsys):
    with pytest.raises(SystemExit) as done:
        ENTRY_POINTS[name](["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--seed" in text and "--out" in text, name
    assert "(default:" in text  # argparse's defaults formatter


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_a_bad_option_is_one_line_and_exit_2(name, capsys):
    with pytest.raises(SystemExit) as done:
        ENTRY_POINTS[name](["--no-such-option"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: python -m pinn_jax") and err.endswith("(see --help)")


def test_console_scripts_point_at_real_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"pinn-train", "pinn-evaluate", "pinn-diagnose", "pinn-distill", "pinn-bench", "pinn-pretrained"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func)), target
    assert pretrained.main is not None and study.main is not None


def test_list_configs_shows_every_shipped_config_with_a_line(capsys):
    from pinn_jax import configs

    assert train.main(["--list-configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == configs.available()
    assert all(len(line.split()) > 3 for line in lines)
    for name, line in zip(configs.available(), lines):  # a whole sentence of the config's leading comment
        description = line[len(name):].strip()
        comment = " ".join(" ".join(row.lstrip("# ") for row in (configs.HERE / f"{name}.yaml").read_text()
                                    .splitlines() if row.startswith("#")).split())
        assert description[-1] in ".!?" and comment.startswith(description), (name, description)


def test_importing_the_training_cli_does_not_start_jax():
    """jax.distributed.initialize must run before anything starts JAX's backend."""
    code = ("import pinn_jax.train; from jax._src import xla_bridge as xb; import sys; "
            "print('gymnax' in sys.modules, 'evosax' in sys.modules, xb.backends_are_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


def test_progress_without_a_bar_is_a_status_line_at_once_then_at_most_every_period_and_at_the_end(capsys):
    from pinn_jax.training import progress

    clock = iter([1.0, 2.0, 40.0, 41.0])
    with progress.Tracker(4, "evaluate", bar=False, every=30.0, clock=lambda: next(clock)) as t:
        t.note("compiling…")
        for i in range(4):
            t.advance(1, f"cell {i}")
        t.log("a note")
    lines = capsys.readouterr().out.strip().splitlines()  # on stdout: stderr holds only errors
    # the note and the first line at once, then one after 30 s, then the last one
    assert lines == ["evaluate 0/4  compiling…", "evaluate 1/4  cell 0", "evaluate 3/4  cell 2",
                     "evaluate 4/4  cell 3", "a note"]
    with progress.Tracker(2, "quiet", bar=False, enabled=False) as t:
        t.advance(2, "done")
        t.log("hidden")
    assert capsys.readouterr().out == ""


def test_a_bar_written_to_a_file_does_not_wrap(capsys):
    """Off a terminal (a batch or SLURM log) rich would wrap at 80 columns, mid-phrase: every line stays whole."""
    from pinn_jax.training import progress

    note, info = "held-out return of the search mean " * 5, "best 192.2  mean 123.6  best held-out 175.7  2.72 gen/s"
    with progress.Tracker(2, "gen", bar=True) as t:
        t.log(note.strip())
        t.advance(2, info)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == note.strip() and len(lines) == 2 and info in lines[1]


def test_evaluate_without_progress_bar_reports_each_cell_and_the_end(tmp_path, capsys):
    assert evaluate.main(["pretrained:cartpole_linear", "--episodes", "2", "--max-steps", "20", "--shuffle-every",
                          "--noise", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out  # progress goes to stdout; stderr holds only errors
    assert "evaluate 2/2  shuffle pretrained:cartpole_linear" in out  # the final status line
    assert "no_shuffle  pretrained:cartpole_linear:" in out  # each cell's line


def test_the_dispatcher_runs_every_command_and_refuses_an_unknown_one(capsys):
    """python -m pinn_jax CMD: every command's own main, the same console script (pyproject) for each, one line for
    an unknown command."""
    import tomllib

    from pinn_jax.__main__ import COMMANDS
    from pinn_jax.__main__ import main as dispatch

    assert dispatch(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {c} " in listing for c in COMMANDS)
    assert dispatch(["nope"]) == 2
    assert capsys.readouterr().err.strip() == f"error: unknown command 'nope'; use one of {', '.join(COMMANDS)}"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for cmd, (module, _) in COMMANDS.items():
        assert scripts[f"pinn-{cmd.replace('_', '-')}"] == f"{module}:main"
        with pytest.raises(SystemExit) as e:
            dispatch([cmd, "--help"])
        assert e.value.code == 0 and "python -m pinn_jax" in capsys.readouterr().out


def test_help_states_each_default_once_and_names_the_program_as_invoked(capsys, monkeypatch):
    """A help that says its default, or a None default, gets no second ``(default: ...)``; the usage line names the
    console script that runs; descriptions read without reST markup."""
    from pinn_jax.errors import ArgumentParser

    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words
    assert "(default: the first model's)" in text and "(default: None)" not in text
    assert text.count("(default:") == text.count("default:")  # no help says its default twice
    assert "(default: mean)" in text  # a plain default is still shown
    with pytest.raises(SystemExit):
        distill.main(["--help"])
    assert "``" not in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pinn-evaluate", "--help"])
    assert ArgumentParser(prog="python -m pinn_jax evaluate").prog == "pinn-evaluate"
    assert ArgumentParser(prog="python -m pinn_jax.train").prog == "python -m pinn_jax.train"  # another command
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pinn-train"])
    assert ArgumentParser(prog="python -m pinn_jax.train").prog == "pinn-train"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pinn-pycma-reference"])
    assert ArgumentParser(prog="python -m pinn_jax pycma_reference").prog == "pinn-pycma-reference"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pinn", "pretrained", "list"])  # the dispatcher
    assert ArgumentParser(prog="python -m pinn_jax pretrained fetch-official").prog == "pinn pretrained fetch-official"
