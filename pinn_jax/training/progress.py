"""Progress of a long command, one way for every entry point: a rich progress bar, or (``bar=False``,
``--no-progress``) one status line on stderr at once, then at most every 30 s, and at the end. Lines never wrap, so a
log redirected to a file (a batch or SLURM job) keeps each line whole."""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["Tracker"]


def _console() -> Console:
    """rich's console on stdout; off a terminal (a log file) as wide as any line, where rich would wrap at 80."""
    console = Console()
    return console if console.is_terminal else Console(width=_UNWRAPPED)


_UNWRAPPED = 100_000  # columns of a console that writes to a file


class Tracker:
    """``with Tracker(total, label) as t: ... t.advance(n, info)``; ``t.log(msg)`` prints a line without
    breaking the bar. ``enabled=False`` shows nothing at all (e.g. on processes other than the first)."""

    def __init__(self, total: int, label: str, bar: bool = True, every: float = 30.0, completed: int = 0,
                 enabled: bool = True, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.label, self.every, self.done = total, label, every, completed
        self.enabled = enabled
        self.bar = bar and enabled
        self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not self.bar,
                                  console=_console())
        self._task: Any = None
        self._clock = clock
        self._last: float | None = None  # when the last status line was printed (None: none yet)

    def __enter__(self) -> "Tracker":
        self._progress.__enter__()
        self._task = self._progress.add_task(self.label, total=self.total, completed=self.done, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def advance(self, n: int = 1, info: str = "") -> None:
        """``n`` more units done; ``info`` is shown beside the bar (or in the status line)."""
        self.done += n
        self._progress.update(self._task, completed=self.done, info=info)
        now = self._clock()
        if self.enabled and not self.bar and (self._last is None or self.done >= self.total
                                              or now - self._last >= self.every):
            self._status(info)
            self._last = now

    def note(self, info: str) -> None:
        """Show ``info`` now without advancing (e.g. ``compiling…``): beside the bar, or as a status line at once."""
        self._progress.update(self._task, info=info)
        if self.enabled and not self.bar:
            self._status(info)

    def _status(self, info: str) -> None:
        print(f"{self.label} {self.done}/{self.total}  {info}".rstrip(), flush=True)

    def log(self, msg: str) -> None:
        """A line of its own, above the bar."""
        if not self.enabled:
            return
        if self.bar:
            self._progress.console.print(msg, highlight=False, markup=False, soft_wrap=True)
        else:
            print(msg, flush=True)
