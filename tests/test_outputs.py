"""Nothing lost (issue 38, the output side): no command replaces a file without --force, every output path is
checked before any work, and a write that fails (a full disk) is one line that leaves the old file and no
temporary behind."""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess

import numpy as np
import pytest
import yaml
from conftest import reference_weights, tiny_dict

from pinn_jax import artifacts
from pinn_jax.errors import UserError, WriteError
from pinn_jax.models import official, pretrained
from pinn_jax.study import across_envs, curves, diagnose, evaluate, video
from pinn_jax.tools import bench, demo, distill
from pinn_jax.training.metrics import COLUMNS, EVAL_COLUMNS

EVALUATE = ["pretrained:cartpole_linear", "--episodes", "2", "--max-steps", "20", "--shuffle-every", "--noise"]
NOT_UTF8 = os.fsdecode(b"out\xff")  # a command-line argument that is not UTF-8, as Python decodes it


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err  # nothing else: no work was reported
    return err[0]


def no_temporaries(folder: pathlib.Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def run(tmp_path) -> pathlib.Path:
    """A finished run of the tiny linear config: config.yaml, params.npz, its logs (metrics.csv, eval.csv)."""
    run = tmp_path / "run"
    run.mkdir()
    artifacts.write_config(run, tiny_dict(str(run)))
    artifacts.save_run_params(run, np.zeros(6), np.zeros(6))
    (run / artifacts.METRICS_FILE).write_text(",".join(COLUMNS) + "\n" + "".join(
        ",".join(str(float(g if c == "generation" else g + 1)) for c in COLUMNS) + "\n" for g in (1, 2)))
    (run / artifacts.EVAL_FILE).write_text(",".join(EVAL_COLUMNS) + "\n" + "".join(
        ",".join(str(float(g if c == "generation" else g + 1)) for c in EVAL_COLUMNS) + "\n" for g in (1, 2)))
    return run


# ------------------------------------------------------------------------------------------ artifacts
def test_a_failed_write_is_one_write_error_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = artifacts.write_text(tmp_path / "report.json", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        artifacts.write_text(path, "new")
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC  # for callers that catch OSError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_file_name_as_long_as_the_system_allows_is_written(tmp_path):
    path = tmp_path / ("v" * 246 + ".gif")  # 250 bytes: a valid name, though not with more added to it
    assert artifacts.output_file(path, "--video") == path
    with artifacts.atomic(path) as tmp:
        assert tmp.suffix == ".gif"
        tmp.write_bytes(b"GIF89a")
    assert path.read_bytes() == b"GIF89a" and no_temporaries(tmp_path)


def test_output_checks_refuse_what_would_be_replaced_unless_forced(tmp_path):
    (tmp_path / "v.gif").write_text("keep")
    with pytest.raises(UserError, match=r"^--video .*v\.gif already exists: add --force to replace it$"):
        artifacts.output_file(tmp_path / "v.gif", "--video")
    assert artifacts.output_file(tmp_path / "v.gif", "--video", force=True) == tmp_path / "v.gif"
    (tmp_path / artifacts.REPORT_CSV).write_text("keep")
    with pytest.raises(UserError, match=r"already holds report\.csv: add --force to replace it$"):
        artifacts.output_dir(tmp_path, "--out", artifacts.EVALUATE_FILES)
    assert artifacts.output_dir(tmp_path, "--out", artifacts.EVALUATE_FILES, force=True) == tmp_path
    assert artifacts.output_dir(tmp_path, "--out", artifacts.STUDY_FILES) == tmp_path  # none of its own files
    with pytest.raises(UserError, match="already exists and is not empty: give a new directory for this run"):
        artifacts.output_dir(tmp_path, "--out", empty=True)
    assert (tmp_path / "v.gif").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == [
        artifacts.REPORT_CSV, "v.gif"]


@pytest.mark.parametrize("check", [artifacts.output_dir, artifacts.output_file])
def test_output_checks_refuse_names_that_cannot_be_written_in_one_line(tmp_path, check):
    cases = [(tmp_path / NOT_UTF8, r"out\\xff is not a valid UTF-8 name; choose another$"),
             (tmp_path / ("y" * 256), "File name too long"),
             (tmp_path / ("y/" * 2100), "File name too long")]  # past PATH_MAX
    for path, message in cases:
        with pytest.raises(UserError, match=message):
            check(path, "--out")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- never overwrite without asking
def test_evaluate_refuses_every_output_that_exists_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / artifacts.REPORT_JSON).write_text("keep")
    (tmp_path / "v.gif").write_text("keep")
    (tmp_path / "a.png").write_text("keep")
    cases = [(["--out", str(out)], f"--out {out} already holds report.json: add --force to replace it"),
             (["--video", str(tmp_path / "v.gif")], "v.gif already exists: add --force to replace it"),
             (["--attention", str(tmp_path / "a.png")], "a.png already exists: add --force to replace it")]
    for extra, message in cases:
        assert evaluate.main([*EVALUATE, *extra]) == 2
        assert one_error_line(capsys).endswith(message)
    assert all(f.read_text() == "keep" for f in (out / artifacts.REPORT_JSON, tmp_path / "v.gif", tmp_path / "a.png"))


def test_the_other_commands_refuse_to_replace_their_outputs(tmp_path, capsys, run):
    def holding(name: str, *files: str) -> pathlib.Path:
        folder = tmp_path / name
        folder.mkdir()
        for f in files:
            (folder / f).write_text("keep")
        return folder

    page, study, diag = holding("page", "index.html"), holding("study", "study.md"), holding("diag", "diagnose.json")
    benched, agents = holding("bench", "bench_scaling.png"), holding("agents", "a.json")
    figure, weights = holding("fig", "c.png") / "c.png", holding("weights", "model.npz") / "model.npz"
    cases = [
        (demo.main, [str(page), "--model", "pretrained:cartpole_linear"], f"OUT_DIR {page} already holds index.html"),
        (across_envs.main, ["pretrained:cartpole_linear", "--episodes", "2", "--out", str(study)], "holds study.md"),
        (diagnose.main, ["pretrained:cartpole_linear", "--out", str(diag)], "already holds diagnose.json"),
        (curves.main, ["--run", f"a={run}", "--out", str(figure)], f"--out {figure} already exists"),
        (bench.main, ["--tiny", "--out", str(benched)], "already holds bench_scaling.png"),
        (pretrained.main, ["export", str(run), "a", "--out", str(agents)], f"--out {agents / 'a.json'} already exists"),
        (official.main, ["--url", "file:///nowhere/model.npz", "--out", str(weights)], f"{weights} already exists"),
    ]
    for main, argv, message in cases:
        assert main(argv) == 2, argv
        err = one_error_line(capsys)
        assert message in err and err.endswith("add --force to replace it"), err
    assert all(f.read_text() == "keep" for f in tmp_path.rglob("*") if f.is_file() and f.parent != run)
    assert sorted(p.name for p in agents.iterdir()) == ["a.json"]  # not half an export either


def test_export_writes_into_the_current_directory_and_into_the_package_only_when_told(tmp_path, run, monkeypatch,
                                                                                     capsys):
    package = tmp_path / "package"
    package.mkdir()
    monkeypatch.setattr(pretrained, "HERE", package)
    monkeypatch.chdir(tmp_path)
    assert pretrained.main(["export", str(run), "agent"]) == 0
    assert (tmp_path / "agent.npz").is_file() and (tmp_path / "agent.json").is_file()
    assert list(package.iterdir()) == []
    assert pretrained.main(["export", str(run), "agent", "--into-package"]) == 0
    assert sorted(p.name for p in package.iterdir()) == ["agent.json", "agent.npz"]
    capsys.readouterr()
    assert pretrained.main(["export", str(run), "agent", "--into-package"]) == 2
    assert one_error_line(capsys) == (f"error: --into-package {package / 'agent.npz'} already exists: add --force to "
                                      f"replace it")
    (package / "agent.json").write_text("{}")
    assert pretrained.main(["export", str(run), "agent", "--into-package", "--force"]) == 0
    assert yaml.safe_load((package / "agent.json").read_text())["params"] == "mean"
    assert pretrained.main(["export", str(run), "../agent"]) == 2
    assert one_error_line(capsys) == "error: NAME must be a file name without a folder, got '../agent'"


# ------------------------------------------------------------------------- output paths checked first
def test_bad_output_paths_are_one_line_before_any_work(tmp_path, capsys, run):
    long_name = str(tmp_path / ("v" * 300 + ".gif"))
    (tmp_path / "folder").mkdir()
    cases = [
        (evaluate.main, [*EVALUATE, "--out", str(tmp_path / NOT_UTF8)], "is not a valid UTF-8 name"),
        (evaluate.main, [*EVALUATE, "--video", long_name], "File name too long"),
        (curves.main, ["--run", f"a={run}", "--out", str(tmp_path / (NOT_UTF8 + ".png"))], "not a valid UTF-8 name"),
        (pretrained.main, ["export", str(run), NOT_UTF8, "--out", str(tmp_path)], "not a valid UTF-8 name"),
        (pretrained.main, ["export", str(run), "agent", "--out", "/proc"], "--out /proc is not writable"),
        (official.main, ["--url", "file:///nowhere", "--out", str(tmp_path / "folder")], "is a directory, not a file"),
        (official.main, ["--url", "file:///nowhere", "--out", "/proc/model.npz"], "directory /proc is not writable"),
        (demo.main, [str(tmp_path / NOT_UTF8), "--model", "pretrained:cartpole_linear"], "not a valid UTF-8 name"),
    ]
    for main, argv, message in cases:
        assert main(argv) == 2, argv
        err = one_error_line(capsys)
        assert message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "run"]


# ------------------------------------------------------------------------------------------ a full disk
def full_disk(monkeypatch) -> list[str]:
    """Every file flushed from now on fails as on a full disk, after its bytes were written; returns the files
    that were full (their open file descriptors' targets)."""
    tried: list[str] = []

    def fsync(fd: int) -> None:
        tried.append(os.readlink(f"/proc/self/fd/{fd}"))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    return tried


def test_a_full_disk_is_one_line_at_every_command_and_keeps_the_old_files(tmp_path, capsys, monkeypatch, run):
    out = tmp_path / "out"
    out.mkdir()
    old = {out / name: "old" for name in (artifacts.REPORT_JSON, artifacts.STUDY_JSON, artifacts.DIAGNOSE_JSON,
                                          "a.npz", "fig.png", "v.gif", "attention.png")}
    for path, text in old.items():
        path.write_text(text)
    teacher = tmp_path / "student.yaml"
    teacher.write_text(yaml.safe_dump(tiny_dict(str(tmp_path / "unused"))))
    cases = [
        (evaluate.main, [*EVALUATE, "--out", str(out), "--force"], out / artifacts.REPORT_JSON),
        (evaluate.main, [*EVALUATE, "--video", str(out / "v.gif"), "--video-steps", "3", "--video-size", "32x32",
                         "--force"], out / "v.gif"),
        (evaluate.main, ["pretrained:cartpole_pi_catch", "--episodes", "2", "--max-steps", "20", "--shuffle-every",
                         "--noise", "--attention", str(out / "attention.png"), "--force"], out / "attention.png"),
        (across_envs.main, ["pretrained:cartpole_linear", "--episodes", "2", "--conditions", "no_shuffle",
                            "--out", str(out), "--force", "--no-progress"], out / artifacts.STUDY_JSON),
        (diagnose.main, ["pretrained:cartpole_linear", "--episodes", "2", "--max-steps", "20", "--out", str(out),
                         "--force", "--no-progress"], out / artifacts.DIAGNOSE_JSON),
        (curves.main, ["--run", f"a={run}", "--out", str(out / "fig.png"), "--force"], out / "fig.png"),
        (pretrained.main, ["export", str(run), "a", "--out", str(out), "--force"], out / "a.npz"),
        (distill.main, ["--teacher", "pretrained:cartpole_linear", "--student", str(teacher), "--rounds", "1",
                        "--episodes", "2", "--updates", "1", "--batch", "2", "--out", str(tmp_path / "d"),
                        "--no-progress"], tmp_path / "d" / artifacts.CONFIG_FILE),
    ]
    if reference_weights().is_file():
        (out / "model.npz").write_text("old")
        old[out / "model.npz"] = "old"
        cases.append((official.main, ["--url", reference_weights().as_uri(), "--out", str(out / "model.npz"),
                                      "--force"], out / "model.npz"))
    for main, argv, target in cases:
        tried = full_disk(monkeypatch)
        assert main(argv) == 2, argv
        monkeypatch.undo()
        err = capsys.readouterr().err.strip().splitlines()
        assert [line for line in err if line.startswith("error:")] == [
            f"error: cannot write {target}: No space left on device"], (argv, err)
        assert tried and all(".tmp" in t for t in tried)  # bytes were written, into a temporary file
    assert {path: path.read_text() for path in old} == old
    assert no_temporaries(tmp_path)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no second failure when collected
def test_a_real_full_disk(tmp_path, capsys, run):
    """The same on a 64 KiB tmpfs filled up (where one may be mounted): the kernel's own ENOSPC, from a figure
    and from both video encoders (ffmpeg is a separate process that imageio-ffmpeg does not check)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        for name in ("fig.png", "v.gif", "v.mp4"):
            (disk / name).write_text("old")
        with open(disk / "filler", "wb") as f:  # fill it up: what is left takes no more bytes
            with pytest.raises(OSError):
                f.write(b"\0" * (128 << 10))
                f.flush()
        assert curves.main(["--run", f"a={run}", "--out", str(disk / "fig.png"), "--force"]) == 2
        assert one_error_line(capsys) == f"error: cannot write {disk / 'fig.png'}: No space left on device"
        assert (disk / "fig.png").read_text() == "old" and no_temporaries(disk)
        frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(3)]
        for name in ("v.gif", "v.mp4"):
            with pytest.raises(WriteError, match=f"^cannot write {disk / name}: "):
                video.write_video(frames, disk / name)
            assert (disk / name).read_text() == "old" and no_temporaries(disk)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
