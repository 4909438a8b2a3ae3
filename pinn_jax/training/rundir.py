"""Run directories: checked before anything is written, used by one process at a time.

:func:`check_usable` refuses a ``--run-dir`` that is a file, or that sits where nothing can be written (no
permission, read-only file system), before anything is created. :class:`RunDirLock` is an exclusive lock on
``RUN_DIR/.lock``: an ``fcntl.flock`` held on an open file descriptor for as long as a training process
uses the directory (fresh run or ``--resume``). The kernel drops it when the process ends, however it
ends, so a lock left by a killed process (``kill -9``, out of memory, a lost node) never blocks the next
run; the file also holds the owner's pid and host, for the message a second process gets, and is
removed when the lock is released normally. (``flock``
works on local file systems and, on Linux, on NFS, where it is emulated with byte-range locks.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import shutil
import socket
import time

from pinn_jax.errors import RunDirError

__all__ = ["LOCK_NAME", "check_usable", "create", "remove_created", "RunDirLock"]

LOCK_NAME = ".lock"


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    path = path.absolute()
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _not_writable(path: pathlib.Path) -> str | None:
    """Why nothing can be created in the directory ``path`` (None when something can)."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    if not os.access(path, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def check_usable(run_dir: str | pathlib.Path) -> None:
    """:class:`RunDirError` unless ``run_dir`` is a writable directory or can be created as one.

    Creates nothing: the checks only look at ``run_dir`` and its nearest existing parent.
    """
    run_dir = pathlib.Path(run_dir)
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory; choose another run_dir")
    base = _nearest_existing(run_dir)
    if not base.is_dir():
        raise RunDirError(f"cannot create run directory {run_dir}: {base} is not a directory")
    why = _not_writable(base)
    if why:
        where = "" if base == run_dir.absolute() else f" (in {base})"
        raise RunDirError(f"cannot write run directory {run_dir}: {why}{where}")


def create(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Create ``run_dir`` (and missing parents); return the directories created here, outermost first."""
    run_dir = pathlib.Path(run_dir)
    missing = []
    p = run_dir.absolute()
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    made = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
                made.append(d)
            except FileExistsError:  # another process made it meanwhile: not ours to remove later
                if not d.is_dir():
                    raise
    except OSError as e:
        raise RunDirError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    return made


def remove_created(run_dir: str | pathlib.Path, made: list[pathlib.Path]) -> bool:
    """Undo a fresh run that left nothing worth keeping: remove ``run_dir`` if it was created here (``made``,
    from :func:`create`, parents included when empty), else only its contents (it was empty before).
    Returns whether anything was removed."""
    run_dir = pathlib.Path(run_dir).absolute()
    if not run_dir.is_dir():
        return False
    if made and made[-1] == run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
        for d in reversed(made[:-1]):  # created parents, innermost first, only while empty
            try:
                d.rmdir()
            except OSError:
                break
    else:
        for child in run_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    return True


class RunDirLock:
    """An exclusive lock on a run directory (``RUN_DIR/.lock``); see the module docstring.

    ``acquire`` raises :class:`RunDirError` naming the directory and the pid holding it. With ``enabled=False``
    (processes other than 0 of a ``jax.distributed`` run) it does nothing. Usable as a context manager.
    """

    def __init__(self, run_dir: str | pathlib.Path, enabled: bool = True) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.enabled = enabled
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunDirLock:
        if not self.enabled or self._fd is not None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise RunDirError(f"cannot lock run directory {self.run_dir}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _holder(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirError(f"cannot lock run directory {self.run_dir}: {e.strerror or e}") from None
                raise RunDirError(f"run directory {self.run_dir} is in use by {holder} (lock file {self.path}); "
                                  f"wait for it to finish or stop it first") from None
            # The file may have been removed (a failed fresh run cleaning up) between open and flock: the lock
            # then guards nothing, so take it again on the file that is there now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            if not self.run_dir.is_dir():
                raise RunDirError(f"run directory {self.run_dir} was removed while locking it")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as e:  # e.g. a full disk: leave no lock file behind, empty or not
            self._fd = fd
            self.release()
            raise RunDirError(f"cannot lock run directory {self.run_dir}: cannot write {self.path} "
                              f"({e.strerror or e})") from None
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:  # remove the file while still holding the lock (acquire re-checks that its file is still there)
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)  # drops the flock

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock, from the file (the holder writes it just after locking: wait a moment for it)."""
    for _ in range(20):
        try:
            text = os.pread(fd, 256, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        if text:
            return f"process {text.removeprefix('pid ')}"
        time.sleep(0.05)
    return "another process"
