"""Fault injection for training runs: a bad --run-dir, corrupt checkpoints, a full disk, SIGTERM while a
checkpoint is written, two processes on one run directory (and a lock left by kill -9), a fresh run that
dies before its first checkpoint. Each failure must be one ``error: ...`` line (exit 2) or a clean stop, and
wherever a run is resumed its final parameters must equal, bit for bit, those of an uninterrupted run.

Process-level behaviour (signals, locks, kill -9, a real full file system) runs in subprocesses.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from pinn_jax import config as config_lib
from pinn_jax.errors import RunDirError, TrainingError
from pinn_jax.train import main, train
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training import rundir
from pinn_jax.training.metrics import MetricsWriter, read_csv

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_dict(run_dir, generations: int = 4, **train_keys) -> dict:
    """A seconds-sized run: linear policy, population 8, 2 rollouts of 50 steps, a checkpoint every 2."""
    return {
        "seed": 3, "run_dir": str(run_dir),
        "env": {"start": "easy", "max_steps": 50},
        "policy": {"name": "linear"},
        "strategy": {"name": "CMA_ES", "population_size": 8, "sigma_init": 0.5},
        "train": {"generations": generations, "rollouts": 2, "log_every": 1, "checkpoint_every": 2, **train_keys},
    }


def tiny(run_dir, generations: int = 4, **train_keys) -> config_lib.Config:
    return config_lib.from_dict(tiny_dict(run_dir, generations, **train_keys))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> pathlib.Path:
    """The tiny config as a YAML file for the command line."""
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict("unused")))
    return path


@pytest.fixture(scope="module")
def trainer():
    """One trainer for every in-process run of the tiny config (compiled once; runs are the same with a new one)."""
    from pinn_jax.training.trainer import make_trainer

    return make_trainer(tiny("unused"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, trainer):
    """``reference(g)``: ``params.npz`` (mean, best) of an uninterrupted run to generation ``g`` (cached)."""
    runs: dict[int, dict[str, np.ndarray]] = {}
    root = tmp_path_factory.mktemp("reference")

    def get(g: int) -> dict[str, np.ndarray]:
        if g not in runs:
            train(tiny(root / str(g), generations=g), progress=False, trainer=trainer)
            with np.load(root / str(g) / "params.npz") as f:
                runs[g] = {k: f[k] for k in ("mean", "best")}
        return runs[g]

    return get


def assert_same_params(run: pathlib.Path, ref: dict[str, np.ndarray]) -> None:
    with np.load(run / "params.npz") as f:
        for k in ("mean", "best"):
            assert f[k].dtype == ref[k].dtype and np.array_equal(f[k], ref[k]), k  # bit for bit


def cli(*argv: str) -> list[str]:
    """The training command line in a fresh interpreter (what the user types)."""
    return [sys.executable, "-m", "pinn_jax.train", "--no-progress", *argv]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def on_disk(run: pathlib.Path) -> list[int]:
    mngr = ckpt.manager(run, create=False)
    try:
        return ckpt.committed_steps(mngr)
    finally:
        ckpt.close(mngr)


def corrupt_data_files(step_dir: pathlib.Path) -> None:
    """Garbage over a checkpoint's array data files (what a bad disk or a stray write does)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(b"\x00garbage\xff" * 40)


def can_mount_tmpfs(where: pathlib.Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def can_bind_read_only(where: pathlib.Path) -> bool:
    """Make the directory ``where`` read-only with a bind mount over itself (root, where mount works)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    if subprocess.run(["mount", "--bind", str(where), str(where)], capture_output=True).returncode != 0:
        return False
    if subprocess.run(["mount", "-o", "remount,bind,ro", str(where)], capture_output=True).returncode != 0:
        umount(where)
        return False
    return True


def umount(where: pathlib.Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


# 1 ------------------------------------------------------------------------------------------ run directory
def test_run_dir_that_is_a_file_or_not_writable_is_refused_before_anything_is_created(tmp_path, capsys,
                                                                                      config_file):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert main(["--config", str(config_file), "--run-dir", str(a_file), "--no-progress"]) == 2
    assert one_error_line(capsys) == (f"error: run directory {a_file} exists and is not a directory; "
                                      f"choose another --out")
    assert a_file.read_text() == "keep me"
    assert main(["--config", str(config_file), "--run-dir", str(a_file / "run"), "--no-progress"]) == 2
    assert one_error_line(capsys) == f"error: cannot create run directory {a_file / 'run'}: {a_file} is not a directory"

    # a read-only location: a read-only tmpfs where we may mount one (root), else a directory without write
    # permission (which root ignores, so then only the mount counts)
    ro = tmp_path / "ro"
    mounted = can_mount_tmpfs(ro, "ro,size=64k")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("no read-only location to test with: root ignores permissions and cannot mount here")
        ro.chmod(0o555)
    try:
        assert main(["--config", str(config_file), "--run-dir", str(ro / "a" / "run"), "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"error: cannot write run directory {ro / 'a' / 'run'}: ")
        assert ("read-only file system" if mounted else "permission denied") in line
        assert not (ro / "a").exists()
    finally:
        if mounted:
            umount(ro)
        else:
            ro.chmod(0o755)


# 2 ---------------------------------------------------------------------------------- unreadable checkpoints
def test_resume_falls_back_to_the_newest_readable_checkpoint_bit_identically(tmp_path, capsys, trainer, reference):
    run = tmp_path / "run"
    train(tiny(run, generations=6), progress=False, trainer=trainer)  # checkpoints 2, 4, 6
    corrupt_data_files(run / "checkpoints" / "6")
    capsys.readouterr()
    train(tiny(run, generations=8), resume=True, progress=False, trainer=trainer)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"warning: checkpoint 6 in {run / 'checkpoints'} is unreadable (")
    assert err[0].endswith(f"); falling back to checkpoint 4; moved it to {run / 'checkpoints' / '6.unreadable'}")
    # the run went on from 4 exactly as an uninterrupted one, wrote 6 again, and orbax's max_to_keep=3
    # pruned 2 (not the set-aside copy, which is kept for inspection)
    assert_same_params(run, reference(8))
    assert on_disk(run) == [4, 6, 8]
    assert (run / "checkpoints" / "6.unreadable" / "state").is_dir()
    assert [r["generation"] for r in read_csv(run)] == list(range(1, 9))

    # nothing readable at all: one line, nothing moved
    for s in (4, 6, 8):
        corrupt_data_files(run / "checkpoints" / str(s))
    assert main(["--resume", str(run), "--set", "train.generations=10", "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: no readable checkpoint in {run / 'checkpoints'} (tried 8, 6, 4; newest, 8: ")
    assert on_disk(run) == [4, 6, 8]


# 3 --------------------------------------------------------------------------------------------- full disk
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_earlier_ones(tmp_path, capsys, monkeypatch,
                                                                                 config_file, trainer, reference):
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as json_handler

    write = json_handler.JsonCheckpointHandler._save_fn

    async def full_disk(self, x, directory):  # the disk fills up while checkpoint 6 is written
        if f"{os.sep}checkpoints{os.sep}6." in str(directory):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "metadata"))
        return await write(self, x, directory)

    monkeypatch.setattr(json_handler.JsonCheckpointHandler, "_save_fn", full_disk)
    run = tmp_path / "run"
    assert main(["--config", str(config_file), "--run-dir", str(run), "--set", "train.generations=8",
                 "--no-progress"]) == 2
    assert one_error_line(capsys) == (
        f"error: could not write checkpoint 6 in {run / 'checkpoints'}: no space left on device; last good checkpoint: "
        f"generation 4 (continue with --resume {run} once it can be written)")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "4"]  # no partial 6 left behind
    assert not (run / "eval.csv").exists()  # no evaluation in this run: no eval.csv
    monkeypatch.setattr(json_handler.JsonCheckpointHandler, "_save_fn", write)  # space again
    train(tiny(run, generations=8), resume=True, progress=False, trainer=trainer)  # writes 6 again
    assert_same_params(run, reference(8))
    assert on_disk(run) == [4, 6, 8]


@pytest.mark.slow
def test_a_real_full_file_system(tmp_path, config_file):
    """The same on a 256 KiB tmpfs (where one may be mounted): TensorStore's RESOURCE_EXHAUSTED, in a subprocess."""
    disk = tmp_path / "disk"
    if not can_mount_tmpfs(disk, "size=256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = disk / "run"
        r = subprocess.run(cli("--config", str(config_file), "--run-dir", str(run), "--set", "train.generations=40",
                               "--set", "train.checkpoint_every=1"), capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-3000:]
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: could not write checkpoint "), err
        assert "no space left on device; last good checkpoint: generation " in err[0]
        last = int(err[0].split("last good checkpoint: generation ")[1].split()[0])
        assert on_disk(run)[-1] == last
        assert not [p for p in (run / "checkpoints").iterdir() if not p.name.isdigit()]
        cfg = ckpt.load_config(run)
        from pinn_jax.training.trainer import make_trainer

        tr = make_trainer(cfg)
        for s in on_disk(run):  # every checkpoint left is readable
            state, meta = ckpt.restore(run, tr.init(), s)
            assert int(state.generation) == meta["generation"] == s
    finally:
        umount(disk)


@pytest.mark.slow
def test_a_checkpoints_directory_that_cannot_be_written_is_one_line_at_once(tmp_path, trainer):
    """A save into a read-only checkpoints directory (a read-only bind mount where one may be made, else a
    directory without write permission): one line, at once. Orbax's asynchronous saves let their writers wait
    five minutes for a step directory that could not be created, then log their tracebacks."""
    run = tmp_path / "run"
    train(tiny(run, generations=2), progress=False, trainer=trainer)
    checkpoints = run / "checkpoints"
    mounted = can_bind_read_only(checkpoints)
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("no read-only checkpoints directory to test with: root ignores permissions and cannot mount")
        checkpoints.chmod(0o555)
    try:
        r = subprocess.run(cli("--resume", str(run), "--set", "train.generations=4"), capture_output=True, text=True,
                           timeout=120)
    finally:
        if mounted:
            umount(checkpoints)
        else:
            checkpoints.chmod(0o755)
    assert r.returncode == 2, r.stderr[-3000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: could not write checkpoint 4 in {checkpoints}: "), err
    assert ("read-only file system" if mounted else "permission denied") in err[0]
    assert err[0].endswith(f"last good checkpoint: generation 2 (continue with --resume {run} once it can be written)")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2"]


def test_what_a_failed_orbax_operation_leaves_behind_prints_nothing_and_the_rest_still_does():
    """What the tmpfs run met now and then, made certain in a fresh interpreter: an operation fails inside
    ``_quiet`` leaving, in its frames, a coroutine it never awaited and a future whose exception nobody
    retrieved (the failure itself is kept until exit), and a TensorStore callback into its closed event loop
    comes after the failure was handled. None of it prints; anyone else's never-awaited coroutine and failing
    TensorStore callback still do."""
    code = (
        "import asyncio\n"
        "import tensorstore as ts\n"
        "from pinn_jax.training import checkpoint\n"
        "async def write(): pass\n"
        "async def mine(): pass\n"
        "late = []\n"
        "def failing_save():\n"
        "    loop = asyncio.new_event_loop()\n"
        "    unawaited = write()\n"
        "    unretrieved = loop.create_future()\n"
        "    unretrieved.set_exception(OSError(28, 'No space left on device'))\n"
        "    loop.close()\n"
        "    promise, future = ts.Promise.new()\n"
        "    future.add_done_callback(lambda _: loop.call_soon_threadsafe(print))\n"
        "    late.append(promise)\n"
        "    raise ValueError('RESOURCE_EXHAUSTED: write failed')\n"
        "kept = []\n"
        "try:\n"
        "    with checkpoint._quiet():\n"
        "        failing_save()\n"
        "except ValueError as err:\n"
        "    kept.append(err)\n"
        "late[0].set_result(None)\n"
        "promise, future = ts.Promise.new()\n"
        "future.add_done_callback(lambda _: 1 / 0)\n"
        "promise.set_result(None)\n"
        "m = mine()\n"
        "del m\n"
        "print('done')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    assert "'mine' was never awaited" in r.stderr and "ZeroDivisionError" in r.stderr, r.stderr
    assert "write" not in r.stderr and "never retrieved" not in r.stderr and "loop is closed" not in r.stderr, r.stderr


def test_a_finished_run_without_checkpoints_is_not_resumed_and_the_advice_loses_nothing(tmp_path, capsys, trainer):
    run, new = tmp_path / "run", tmp_path / "new"
    train(tiny(run, generations=2), progress=False, trainer=trainer)
    shutil.rmtree(run / "checkpoints")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["--resume", str(run), "--set", "train.generations=4", "--no-progress"]) == 2
    assert one_error_line(capsys) == (
        f"error: {run} has no checkpoint to resume (none in checkpoints/); keep the directory, its params.npz and "
        f"logs, and go on in a new run: --config {run}/config.yaml --set strategy.init_mean={run}/params.npz and "
        f"another --out")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing lost or written
    # the advice works: the new run starts from the finished run's search mean
    assert main(["--config", str(run / "config.yaml"), "--set", f"strategy.init_mean={run}/params.npz",
                 "--out", str(new), "--set", "train.generations=1", "--no-progress"]) == 0
    with np.load(run / "params.npz") as done, np.load(new / "init_mean.npz") as start:
        assert np.array_equal(start["params"], done["mean"])


# 4 ---------------------------------------------------------------------------------- SIGTERM while saving
@pytest.mark.slow
def test_sigterm_while_a_checkpoint_is_written_reports_only_what_is_on_disk(tmp_path, config_file, trainer,
                                                                            reference):
    run = tmp_path / "run"
    proc = subprocess.Popen(cli("--config", str(config_file), "--run-dir", str(run), "--set", "train.generations=100000",
                                "--set", "train.checkpoint_every=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, writing = time.time() + 240, set()
        while time.time() < deadline and proc.poll() is None:
            if (run / "checkpoints").is_dir():
                writing |= {p.name for p in (run / "checkpoints").iterdir() if ".orbax-checkpoint-tmp" in p.name}
            if len(writing) >= 2:  # past compilation, in the middle of writing a checkpoint
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.001)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert len(writing) >= 2, "never saw a checkpoint being written"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "WARNING" not in err and "Error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: saved generation "), err
    saved = int(lines[0].removeprefix("interrupted: saved generation ").split()[0])
    steps = on_disk(run)
    assert saved == steps[-1]  # the generation reported is the newest one committed on disk
    assert not [p for p in (run / "checkpoints").iterdir() if not p.name.isdigit()]  # nothing half written
    train(tiny(run, generations=saved + 2, checkpoint_every=1), resume=True, progress=False, trainer=trainer)
    assert_same_params(run, reference(saved + 2))
    assert [r["generation"] for r in read_csv(run)] == list(range(1, saved + 3))


@pytest.mark.slow
def test_ctrl_c_pressed_again_and_again_neither_cuts_the_save_short_nor_prints_a_traceback(tmp_path, config_file):
    run = tmp_path / "run"
    proc = subprocess.Popen(cli("--config", str(config_file), "--run-dir", str(run), "--set",
                                "train.generations=100000", "--set", "train.checkpoint_every=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(
                (run / "metrics.csv").read_text().splitlines() if (run / "metrics.csv").exists() else []) < 6:
            time.sleep(0.01)
        sent = 0
        while proc.poll() is None and sent < 2000:  # a second Ctrl-C, and more, during the save, clean-up and exit
            proc.send_signal(signal.SIGINT)
            sent += 1
            time.sleep(0.005)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert sent >= 2 and proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: saved generation "), err
    saved = int(lines[0].removeprefix("interrupted: saved generation ").split()[0])
    assert saved >= 5 and saved == on_disk(run)[-1]
    assert not (run / rundir.LOCK_NAME).exists()


# 5 ---------------------------------------------------------------------------------------- run dir lock
def test_lock_refuses_a_second_process_in_the_same_process_too(tmp_path):
    with rundir.RunDirLock(tmp_path):
        with pytest.raises(RunDirError, match=rf"run directory {tmp_path} is in use by process {os.getpid()} on "):
            rundir.RunDirLock(tmp_path).acquire()
    assert not (tmp_path / rundir.LOCK_NAME).exists()  # released: file removed
    rundir.RunDirLock(tmp_path).acquire().release()


def test_a_lock_file_that_cannot_be_written_is_one_line_and_leaves_no_lock(tmp_path, capsys, monkeypatch,
                                                                           trainer, config_file):
    real_write = os.write

    def full_disk_for_locks(fd, data):  # the disk is full when the lock file is written, and only then
        if os.readlink(f"/proc/self/fd/{fd}").endswith(rundir.LOCK_NAME):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    done = tmp_path / "done"
    train(tiny(done, generations=2), progress=False, trainer=trainer)
    before = sorted(p.name for p in done.iterdir())
    monkeypatch.setattr(os, "write", full_disk_for_locks)
    fresh = tmp_path / "runs" / "fresh"
    for argv, run in ((["--resume", str(done)], done), (["--config", str(config_file), "--out", str(fresh)], fresh)):
        assert main([*argv, "--set", "train.generations=4", "--no-progress"]) == 2
        assert one_error_line(capsys) == (f"error: cannot lock run directory {run}: cannot write {run / '.lock'} "
                                          f"(No space left on device)")
        assert not (run / rundir.LOCK_NAME).exists()
    assert sorted(p.name for p in done.iterdir()) == before  # the resume touched nothing
    assert not (tmp_path / "runs").exists()  # the fresh run removed the directories it made


@pytest.mark.slow
def test_a_second_run_on_a_locked_run_dir_is_refused_and_a_kill_9_lock_does_not_block(tmp_path, capsys, trainer,
                                                                                        reference):
    run = tmp_path / "run"
    train(tiny(run, generations=2), progress=False, trainer=trainer)
    holder = subprocess.Popen(cli("--resume", str(run), "--set", "train.generations=100000"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = run / rundir.LOCK_NAME
    try:
        deadline = time.time() + 240
        while time.time() < deadline and holder.poll() is None and not (
                lock.exists() and lock.read_text().startswith(f"pid {holder.pid} ")):
            time.sleep(0.01)
        assert holder.poll() is None, holder.communicate()
        # a second resume (and a fresh run into the directory) at the same time: refused, one line, the pid
        for argv in (["--resume", str(run), "--set", "train.generations=4"],
                     ["--resume", str(run), "--set", "train.generations=8", "--set", "train.eval_every=2"]):
            assert main([*argv, "--no-progress"]) == 2
            assert one_error_line(capsys) == (
                f"error: run directory {run} is in use by process {holder.pid} on {socket.gethostname()} "
                f"(lock file {lock}); wait for it to finish or stop it first")
        assert not (run / "eval.csv").exists()  # the refused resume wrote nothing
        while time.time() < deadline and len((run / "metrics.csv").read_text().splitlines()) < 13:
            # let the holder train and checkpoint a while
            time.sleep(0.05)
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
    finally:
        holder.kill()
    assert holder.returncode == -signal.SIGKILL
    assert lock.read_text().startswith(f"pid {holder.pid} ")  # left behind by the killed process, but not held
    last = on_disk(run)[-1]
    assert last >= 4
    train(tiny(run, generations=last + 2), resume=True, progress=False, trainer=trainer)
    assert_same_params(run, reference(last + 2))
    # one writer at a time: each generation logged once, in order, although the killed run logged past `last`
    assert [r["generation"] for r in read_csv(run)] == list(range(1, last + 3))


# 6 --------------------------------------------------------------------- fresh run dying before a checkpoint
def test_a_fresh_run_that_fails_before_its_first_checkpoint_removes_what_it_created(tmp_path, capsys, trainer):
    cfg = tiny(tmp_path / "runs" / "run", generations=4)
    tr = trainer

    def crash_at(n):
        calls = []

        def run(s, k):
            calls.append(k)
            if len(calls) >= n:
                raise RuntimeError("boom")
            return tr.run(s, k)
        return dataclasses.replace(tr, run=run)

    with pytest.raises(RuntimeError, match="boom"):  # a programming error keeps its traceback
        train(cfg, progress=False, trainer=crash_at(1))
    assert capsys.readouterr().err.strip() == (f"note: removed {tmp_path / 'runs' / 'run'}, which it created (the run "
                                               f"stopped before its first checkpoint)")
    assert not (tmp_path / "runs").exists()  # the run dir and the parent it created are gone
    _, state, _ = train(cfg, progress=False, trainer=tr)  # so the same command simply works again
    assert int(state.generation) == 4 and on_disk(tmp_path / "runs" / "run") == [2, 4]
    assert not (tmp_path / "runs" / "run" / "eval.csv").exists()  # no evaluation: no eval.csv

    # an existing empty directory is emptied again, not removed; a user error says so on its one line
    empty = dataclasses.replace(cfg, run_dir=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()

    def nan_run(s, k):
        s, m = tr.run(s, k)
        return s, {**m, "nan_count": m["nan_count"] + 1}

    with pytest.raises(TrainingError, match=r"^NaN fitness .* generation 1; stopping \(no checkpoint yet, left "
                                            r"untouched\); emptied .*empty again \(the run stopped before its first "
                                            r"checkpoint\)$"):
        train(empty, progress=False, trainer=dataclasses.replace(tr, run=nan_run))
    assert (tmp_path / "empty").is_dir() and not list((tmp_path / "empty").iterdir())

    # after its first checkpoint a failed run is kept, and resumes
    kept = dataclasses.replace(cfg, run_dir=str(tmp_path / "kept"))
    with pytest.raises(RuntimeError, match="boom"):
        train(kept, progress=False, trainer=crash_at(3))  # generations 1, 2 done, checkpoint 2 saved
    assert on_disk(tmp_path / "kept") == [2]
    _, state, _ = train(kept, resume=True, progress=False, trainer=tr)
    assert int(state.generation) == 4


def test_eval_csv_only_for_runs_that_evaluate(tmp_path):
    for name, tables in (("a", ("train",)), ("b", ("train", "eval"))):
        (tmp_path / name).mkdir()
        MetricsWriter(tmp_path / name, tables=tables).close()
    assert sorted(p.name for p in (tmp_path / "a").glob("*.csv")) == ["metrics.csv"]
    assert sorted(p.name for p in (tmp_path / "b").glob("*.csv")) == ["eval.csv", "metrics.csv"]
    (tmp_path / "c").mkdir()
    MetricsWriter(tmp_path / "c").close()  # the default: no eval table
    assert sorted(p.name for p in (tmp_path / "c").glob("*.csv")) == ["metrics.csv"]


# ---------------------------------------------------------------------------------- probes of the other tools

def test_evaluate_checks_every_output_before_any_work(tmp_path, capsys):
    from pinn_jax.study import evaluate

    (tmp_path / "file").write_text("keep")
    cases = [(["--video", "/proc/v.gif"], "--video /proc/v.gif: its directory /proc is not writable"),
             (["--out", str(tmp_path / "file")], "exists and is not a directory"),
             (["--attention", str(tmp_path / "file" / "a.png")], "is not a directory"),
             (["--env", "NoSuch-v0"], "config key 'env.name' must be one of")]
    for extra, message in cases:
        assert evaluate.main(["pretrained:cartpole_linear", "--episodes", "2", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err  # no "evaluating ..." line: nothing ran
    assert (tmp_path / "file").read_text() == "keep"


def test_output_checks_leave_nothing_behind(tmp_path):
    from pinn_jax import artifacts

    target = tmp_path / "deep" / "v.gif"
    assert artifacts.output_file(target, "--video") == target
    assert (tmp_path / "deep").is_dir() and not target.exists()  # the folder is made, no empty file is left
    assert list((tmp_path / "deep").iterdir()) == []


def test_distill_refuses_a_teacher_from_another_task(tmp_path, capsys):
    from pinn_jax.tools import distill

    argv = ["--teacher", "pretrained:cartpole_v1_pi", "--student", "quick", "--out", str(tmp_path / "d"),
            "--rounds", "1", "--episodes", "2", "--updates", "1", "--batch", "2"]
    assert distill.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: config key 'distill.teacher': pretrained:cartpole_v1_pi acts in CartPole-v1 (2 action "
                   "outputs), the student in CartPoleSwingUp-v0: they must share the task")
    assert not (tmp_path / "d").exists()
