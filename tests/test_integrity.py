"""Nothing lost, nothing misread: every file is written at once (the old one or the new one, never a torn one,
whatever fails and whenever the process is killed), and every file read is distrusted (a torn, empty, mistyped
or hand-edited one is one ``error:`` line naming it). YAML means what a person means; a resume refuses a config
or a held-out protocol other than the one its run was made with."""

from __future__ import annotations

import ast
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import tiny_dict

from pinn_jax import artifacts
from pinn_jax import config as config_lib
from pinn_jax.errors import CheckpointError, ConfigError, ModelError, RunDirError, UserError
from pinn_jax.models import load_model, pretrained
from pinn_jax.training.metrics import COLUMNS, EVAL_COLUMNS, MetricsWriter, read_csv

PACKAGE = pathlib.Path(artifacts.__file__).parent
REPO = PACKAGE.parent


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def torn(path: pathlib.Path, keep: float = 0.5) -> pathlib.Path:
    """``path`` cut to a share of its bytes (0: empty), as a process killed while writing it leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def run_dir_with_config(where: pathlib.Path) -> pathlib.Path:
    where.mkdir(parents=True, exist_ok=True)
    artifacts.write_config(where, tiny_dict(str(where)))
    return where


# 1 -------------------------------------------------------------------------------------------- one writer

@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_write_that_fails_before_it_is_in_place_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failing):
    artifacts.save_eval_best(tmp_path, np.zeros(4), generation=2, return_mean=1.0, episodes=8)
    before = (tmp_path / artifacts.EVAL_BEST_FILE).read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError):
        artifacts.save_eval_best(tmp_path, np.ones(4), generation=4, return_mean=2.0, episodes=8)
    monkeypatch.undo()
    assert (tmp_path / artifacts.EVAL_BEST_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [artifacts.EVAL_BEST_FILE]


def _dies_midway(real):
    """A writer that writes half of what ``real`` would and then fails (a full disk, a crash)."""

    def write(target, *args, **kwargs):
        real(target, *args, **kwargs)
        if hasattr(target, "write"):
            target.flush()
            target.truncate(target.tell() // 2)
        else:
            torn(pathlib.Path(target))
        raise OSError(28, "No space left on device")

    return write


@pytest.mark.parametrize("name", ["save_flat", "save_run_params", "write_config", "shipped json"])
def test_a_writer_that_dies_midway_leaves_the_old_file(tmp_path, monkeypatch, name):
    write = {"save_flat": lambda v: artifacts.save_flat(tmp_path / "student.npz", np.full(50, v)),
             "save_run_params": lambda v: artifacts.save_run_params(tmp_path, np.full(50, v), np.full(50, v)),
             "write_config": lambda v: artifacts.write_config(tmp_path, {"seed": v}),
             "shipped json": lambda v: pretrained._ship(tmp_path, "agent", np.zeros(3), {"note": v})}[name]
    write(1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(np, "savez", _dies_midway(np.savez))
    monkeypatch.setattr(pathlib.Path, "write_text", _dies_midway(pathlib.Path.write_text))
    with pytest.raises(OSError):
        write(2)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


_WRITER = """
import sys
import numpy as np
from pinn_jax import artifacts
print("ready", flush=True)
k = 0
while True:
    k += 1
    artifacts.save_eval_best(sys.argv[1], np.full(2_000_000, k), generation=k, return_mean=float(k), episodes=8)
"""


def test_eval_best_is_never_torn_by_a_kill_9(tmp_path):
    """A process rewriting eval_best.npz (8 MB) as fast as it can, killed -9 at moments spread over its writes:
    each time the file on disk reads back whole, its parameters and score from one and the same write."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env)
        assert p.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while not (tmp_path / artifacts.EVAL_BEST_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        flat, generation = artifacts.saved_params(tmp_path, "eval_best")
        assert flat.size == 2_000_000 and np.all(flat == generation)
        assert artifacts.eval_best_kept(tmp_path) == (float(generation), 8)


def _writes_outside_atomic(source: str, label: str) -> list[str]:
    """Calls that write a file (``write_text``, ``np.savez``, ``savefig``, ``open(..., "w")``, ...) and are not
    inside a ``with ...atomic(...)`` block."""
    writers = {"write_text", "write_bytes", "savez", "savez_compressed", "savefig", "print_figure", "imwrite",
               "get_writer", "copyfile"}
    found = []

    def mode(call: ast.Call) -> str:
        args = [a for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = [k.value for k in call.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        texts = [a.value for a in args] + [k.value for k in kw]
        return next((t for t in texts if set(t) <= set("rwabx+t")), "r")

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.With):
            inside = inside or any(isinstance(i.context_expr, ast.Call) and "atomic" in ast.unparse(i.context_expr.func)
                                   for i in node.items)
        if isinstance(node, ast.Call) and not inside:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            ours = not isinstance(func, ast.Attribute) or ast.unparse(func.value) == "artifacts"  # artifacts.write_text
            if (name in writers and not ours) or (name == "open" and "w" in mode(node)):
                found.append(f"{label}:{node.lineno} {ast.unparse(node)[:60]}")
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


# the writers that are not ours to make atomic, and why
NOT_OURS = {"training/checkpoint.py": "orbax writes checkpoints (committed by rename itself)",
            "training/rundir.py": "the lock file, rewritten in place while locked"}


def test_every_file_the_package_writes_goes_through_artifacts_atomic():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in NOT_OURS:
            found += _writes_outside_atomic(path.read_text(), rel)
    assert found == []


def test_the_check_finds_a_direct_write():
    sample = ("def f(p, d, fig):\n    p.write_text(d)\n    open(p, 'w').close()\n    fig.savefig(p)\n"
              "    with artifacts.atomic(p) as tmp:\n        tmp.write_text(d)\n    open(p).read()\n")
    assert [w.split()[0] for w in _writes_outside_atomic(sample, "sample")] == ["sample:2", "sample:3", "sample:4"]


def test_a_resume_drops_a_torn_last_row_and_what_came_after_its_checkpoint(tmp_path):
    path = tmp_path / artifacts.METRICS_FILE
    rows = [",".join(str(g) for _ in COLUMNS) for g in range(1, 6)]
    path.write_text(",".join(COLUMNS) + "\r\n" + "\r\n".join(rows) + "\r\n" + "6,6.0,6")  # killed mid-row
    MetricsWriter(tmp_path, resume_from=3).close()
    assert [r["generation"] for r in read_csv(tmp_path)] == [1.0, 2.0, 3.0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_rewrite_on_resume_is_atomic(tmp_path, monkeypatch):
    writer = MetricsWriter(tmp_path, tables=("train", "eval"))
    for g in (1, 2, 3):
        writer.write(dict.fromkeys(COLUMNS, float(g)))
        writer.write(dict.fromkeys(EVAL_COLUMNS, float(g)), table="eval")
    writer.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        MetricsWriter(tmp_path, resume_from=1, tables=("train", "eval"))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# 2 ------------------------------------------------------------------------------ one reader, distrusting

@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_a_torn_or_empty_npz_is_one_line_naming_it(tmp_path, keep):
    artifacts.save_eval_best(tmp_path, np.zeros(4), generation=2, return_mean=1.0, episodes=8)
    path = torn(tmp_path / artifacts.EVAL_BEST_FILE, keep)
    for read, error in ((lambda: artifacts.load_flat(path), ModelError),
                        (lambda: artifacts.eval_best_kept(tmp_path), CheckpointError),
                        (lambda: artifacts.saved_params(tmp_path, "eval_best"), CheckpointError)):
        with pytest.raises(error) as info:
            read()
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert ("empty" if keep == 0 else "not a readable .npz") in str(info.value)


def test_mistyped_npz_entries_are_refused(tmp_path):
    path = tmp_path / artifacts.EVAL_BEST_FILE
    np.savez(path, params=np.zeros(3), generation=2, return_mean=np.array([1.0, 2.0]))
    with pytest.raises(CheckpointError, match="'return_mean' must be one finite number"):
        artifacts.eval_best_kept(tmp_path)
    np.savez(path, params=np.array(["a", "b"]), generation=2.5, return_mean=1.0)
    with pytest.raises(CheckpointError, match="'generation' must be one finite integer"):
        artifacts.saved_params(tmp_path, "eval_best")
    np.savez(tmp_path / "p.npz", params=np.array(["a", "b"]))
    with pytest.raises(ModelError, match="holds <U1 values, not numbers"):
        artifacts.load_flat(tmp_path / "p.npz")


def test_torn_parameter_files_are_one_line_at_every_command(tmp_path, capsys, monkeypatch):
    from pinn_jax.study import evaluate

    run = run_dir_with_config(tmp_path / "run")
    flat = run / "student.npz"
    artifacts.save_flat(flat, np.zeros(6))
    torn(flat)
    assert evaluate.main([str(flat), "--episodes", "2"]) == 2
    assert one_error_line(capsys).startswith(f"{flat} is not a readable .npz file")
    artifacts.save_eval_best(run, np.zeros(6), 2, 1.0, 8)
    torn(run / artifacts.EVAL_BEST_FILE)
    assert evaluate.main([str(run), "--params", "eval_best", "--episodes", "2"]) == 2
    assert f"{run / artifacts.EVAL_BEST_FILE} is not a readable .npz file" in one_error_line(capsys)
    assert pretrained.main(["export", str(run), "agent", "--params", "eval_best", "--out", str(tmp_path / "o")]) == 2
    assert f"{run / artifacts.EVAL_BEST_FILE} is not a readable .npz file" in one_error_line(capsys)
    official = tmp_path / "model.npz"
    official.write_bytes(b"")
    monkeypatch.setenv("PINN_JAX_OFFICIAL_WEIGHTS", str(official))
    with pytest.raises(ModelError, match=f"official weights unreadable: {official}: .* is not a readable .npz"):
        load_model("official")


def test_a_torn_init_mean_names_the_key_and_the_file(tmp_path):
    import jax

    from pinn_jax.experiment import setup
    from pinn_jax.training.runs import resolve_start

    path = tmp_path / "start.npz"
    artifacts.save_flat(path, np.zeros(6))
    torn(path)
    with pytest.raises(ConfigError, match=f"'strategy.init_mean': {path} is not a readable .npz"):
        resolve_start(str(path), setup(config_lib.from_dict(tiny_dict("x"))), jax.random.PRNGKey(0))


def shipped_copy(tmp_path, monkeypatch, names=("cartpole_linear", "cartpole_mlp")) -> pathlib.Path:
    for name in names:
        for src in artifacts.agent_files(artifacts.SHIPPED_DIR, name):
            (tmp_path / src.name).write_bytes(src.read_bytes())
    monkeypatch.setattr(artifacts, "SHIPPED_DIR", tmp_path)
    return tmp_path


@pytest.mark.parametrize("text, wrong", [("{\"config\": ", "not valid JSON"), ("[1, 2]", "must hold a JSON object"),
                                         ("{\"config\": {}}", "has no generations, params, num_params entry"),
                                         (b"\xff\xfe{}", "not UTF-8")])
def test_one_broken_shipped_json_affects_only_that_model(tmp_path, monkeypatch, capsys, text, wrong):
    shipped = shipped_copy(tmp_path, monkeypatch)
    meta = shipped / "cartpole_mlp.json"
    meta.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert pretrained.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == ["cartpole_linear"]
    assert err.startswith(f"warning: skipped cartpole_mlp: {meta}") and wrong in err and err.count("\n") == 1
    with pytest.raises(ModelError, match=wrong):
        load_model("pretrained:cartpole_mlp")
    assert load_model("pretrained:cartpole_linear").kind == "linear"


def test_a_torn_shipped_npz_is_one_line(tmp_path, monkeypatch):
    shipped = shipped_copy(tmp_path, monkeypatch, ("cartpole_linear",))
    torn(shipped / "cartpole_linear.npz")
    with pytest.raises(ModelError, match="cartpole_linear.npz is not a readable .npz"):
        load_model("pretrained:cartpole_linear")


def test_a_torn_distill_log_is_one_line_at_export(tmp_path, capsys):
    run = run_dir_with_config(tmp_path / "distill")
    artifacts.round_file(run, 0).parent.mkdir()
    artifacts.save_flat(artifacts.round_file(run, 0), np.zeros(6))
    (run / artifacts.DISTILL_LOG).write_text("round,episodes,loss,return_mean,return_std,wall_time\n0,8,0.1,5")
    assert pretrained.main(["export-student", str(run), "s", "--out", str(tmp_path / "o")]) == 2
    assert one_error_line(capsys) == f"{run / artifacts.DISTILL_LOG} line 2 has 4 values, its header 6"


@pytest.mark.parametrize("data, wrong", [(b"seed: 1\n\xff\xfe\n", "is not UTF-8 text"),
                                         (b"seed: [1\n", "is not valid YAML"),
                                         (b"train:\n  rollouts: 4\ntrain:\n  rollouts: 8\n",
                                          "is not valid YAML: duplicate key 'train' at line 3, column 1")])
def test_a_bad_config_yaml_is_one_line_naming_it(tmp_path, capsys, data, wrong):
    from pinn_jax.train import main

    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys).startswith(f"config file {path} {wrong}")
    run = run_dir_with_config(tmp_path / "saved")
    artifacts.config_file(run).write_bytes(data)
    with pytest.raises(ModelError, match=wrong):
        load_model(str(run))


@pytest.mark.parametrize("text, wrong", [("1,2,3\n", "has 3 values, its header 7"),
                                         ("1,x,1,1,1,1,1\n", "'x' is not a number")])
def test_a_short_or_mistyped_row_is_one_line_naming_file_and_line(tmp_path, capsys, text, wrong):
    from pinn_jax.study import curves

    path = tmp_path / artifacts.EVAL_FILE
    path.write_text(",".join(EVAL_COLUMNS) + "\n" + "2,1,1,1,1,1,1\n" + text)
    with pytest.raises(RunDirError, match=f"{path} line 3"):
        read_csv(tmp_path, artifacts.EVAL_FILE)
    assert curves.main(["--run", f"a={tmp_path}", "--out", str(tmp_path / "c.png")]) == 2
    assert one_error_line(capsys) == f"{path} line 3" + (f" {wrong}" if "values" in wrong else f": {wrong}")
    metrics = tmp_path / artifacts.METRICS_FILE
    metrics.write_text(",".join(COLUMNS) + "\n" + "1,1,1,nan?,1,1,1,1\n")
    with pytest.raises(RunDirError, match=f"{metrics} line 2: 'nan\\?' is not a number"):
        read_csv(tmp_path)


# 3 ------------------------------------------------------------------------------------------------- YAML

@pytest.mark.parametrize("text, value", [("010", 10), ("-010", -10), ("1_000", 1000), ("0x10", 16), ("0b11", 3),
                                         ("1:05", "1:05"), ("1:30.5", "1:30.5"), ("3e-4", "3e-4"), ("1.5", 1.5)])
def test_numbers_read_as_a_person_means_them(text, value):
    assert config_lib.parse_yaml(f"a: {text}") == {"a": value}
    assert config_lib.apply_overrides({}, [f"a={text}"]) == {"a": value}


def test_base_60_and_octal_never_reach_a_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_dict("r")).replace("rollouts: 2", "rollouts: 010"))
    assert config_lib.load(path).train.rollouts == 10  # PyYAML: 8
    with pytest.raises(ConfigError, match="'train.rollouts' has the wrong type: expected int, got '1:05'"):
        config_lib.load(path, ["train.rollouts=1:05"])  # PyYAML: 65


def test_duplicate_keys_are_refused_in_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'rollouts'"):
        config_lib.load("quick", ["train={rollouts: 4, rollouts: 8}"])
    assert config_lib.parse_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n") == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    from pinn_jax.train import main

    monkeypatch.chdir(tmp_path)
    for flag in ("--out", "--resume"):
        with pytest.raises(SystemExit) as exit_:
            main(["--config", "quick", flag, ""])
        assert exit_.value.code == 2
        assert one_error_line(capsys) == f"python -m pinn_jax.train: {flag} must not be empty (see --help)"
    with pytest.raises(ConfigError, match="'run_dir' must name a directory"):
        config_lib.load("quick", ["run_dir=''"])
    with pytest.raises(UserError, match="--out must name a directory"):
        artifacts.output_dir("", "--out")
    assert list(tmp_path.iterdir()) == []


def test_pycma_reference_refuses_an_out_that_holds_a_run(tmp_path, capsys):
    from pinn_jax.tools import pycma_reference

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict("unused")))
    out = run_dir_with_config(tmp_path / "out")
    before = artifacts.config_file(out).read_bytes()
    assert pycma_reference.main(["--config", str(path), "--generations", "2", "--out", str(out)]) == 2
    assert one_error_line(capsys) == f"--out {out} already exists and is not empty: give a new directory for this run"
    assert artifacts.config_file(out).read_bytes() == before


# 4 ----------------------------------------------------------------------------------------------- resume

@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A tiny run to generation 2 that scored its mean on 4 held-out episodes (copied per test)."""
    from pinn_jax.train import train

    run = tmp_path_factory.mktemp("evaluated") / "run"
    cfg = config_lib.from_dict(tiny_dict(str(run), train={"generations": 2, "eval_every": 2, "eval_episodes": 4}))
    train(cfg, progress=False)
    return run


def copy_of(run: pathlib.Path, where: pathlib.Path) -> pathlib.Path:
    import shutil

    return pathlib.Path(shutil.copytree(run, where / "run"))


def test_a_hand_edited_config_yaml_is_not_resumed(tmp_path, capsys, evaluated_run):
    from pinn_jax.train import main

    run = copy_of(evaluated_run, tmp_path)
    path = artifacts.config_file(run)
    path.write_text(path.read_text().replace("rollouts: 2", "rollouts: 3"))
    assert main(["--resume", str(run), "--no-progress", "--set", "train.generations=4"]) == 2
    assert one_error_line(capsys) == (f"cannot resume {run}: its config.yaml (or the config given) changes "
                                      f"train.rollouts from the config its checkpoint was saved with")
    assert [r["generation"] for r in read_csv(run)] == [1.0, 2.0]


def test_the_held_out_protocol_cannot_change_once_a_run_evaluated(tmp_path, capsys, evaluated_run):
    from pinn_jax.train import main

    run = copy_of(evaluated_run, tmp_path)
    assert artifacts.eval_best_kept(run)[1] == 4
    assert main(["--resume", str(run), "--no-progress", "--set", "train.generations=4",
                 "--set", "train.eval_episodes=8"]) == 2
    assert one_error_line(capsys) == (f"cannot resume {run}: its held-out scores (eval.csv, eval_best.npz) are over 4 "
                                      f"episodes; train.eval_episodes=8 would mix two protocols (keep 4, or start a "
                                      f"new run)")
    assert main(["--resume", str(run), "--no-progress", "--set", "train.generations=4"]) == 0
    assert [r["generation"] for r in read_csv(run, artifacts.EVAL_FILE)] == [2.0, 4.0]
