"""User-facing failures: one base class, one formatter, one command-line convention.

A :class:`UserError` is a problem with what the user gave (a config, a path, a model spec, an option)
or with files on disk (a checkpoint, a run directory). Every entry point reports it as one line,
``error: ...``, and exits with code 2; anything else is a programming error and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
from typing import Callable, NoReturn, Sequence

__all__ = ["UserError", "ConfigError", "CheckpointError", "RunDirError", "TrainingError", "ModelError",
           "EvaluationError", "WriteError", "one_line", "cli", "ArgumentParser", "EXIT_USER_ERROR", "EXIT_INTERRUPTED",
           "INT32_MAX", "UINT32_MAX", "int_range", "float_range", "uint32", "positive_int", "nonneg_int",
           "finite_float", "positive_float"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
INT32_MAX = 2**31 - 1  # the largest count, length or size: JAX's default integers are int32
UINT32_MAX = 2**32 - 1  # the largest seed: jax.random.PRNGKey takes a uint32 (a larger one would wrap silently)


class UserError(Exception):
    """A problem with the user's input or files, reported on one line (exit code 2 from every CLI)."""


class ConfigError(UserError):
    """A configuration problem, reported on one line naming the offending key."""


class CheckpointError(UserError):
    """A missing, unreadable or incompatible checkpoint."""


class RunDirError(UserError):
    """A run directory that cannot be used: not a directory, not writable, locked by another process."""


class TrainingError(UserError):
    """Training cannot go on (e.g. NaN fitness); saved checkpoints are left untouched."""


class ModelError(UserError):
    """A model spec that cannot be loaded (the message names the spec or path)."""


class EvaluationError(UserError):
    """A bad evaluation condition or option."""


class WriteError(UserError, OSError):
    """A file that could not be written (disk full, quota exceeded, I/O error): ``cannot write FILE: REASON``.
    Also an :class:`OSError` (``errno``, ``strerror``, ``filename``), for callers that handle failed writes."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def cli(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a ``main(argv) -> exit code``: a :class:`UserError` becomes ``error: ...`` on stderr and exit 2,
    Ctrl-C exit 130. Other exceptions propagate with their traceback."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return wrapped


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, except where the help already says its default or the default is None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def _plain(text: str) -> str:
    """reST markup (``code``, :role:`target`) as the plain text a terminal shows."""
    return re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")


def _invoked(prog: str) -> str:
    """``prog`` as the user typed it: ``python -m pinn_jax evaluate ...`` (or ``python -m pinn_jax.train``) reads
    ``pinn-evaluate ...`` when that console script runs, ``pinn evaluate ...`` under the ``pinn`` dispatcher."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    match = re.fullmatch(r"python -m pinn_jax[ .](\S+)(.*)", prog, re.S)
    if match is None:
        return prog
    cmd, rest = match.groups()
    if script == "pinn":
        return f"pinn {cmd}{rest}"
    return script + rest if script == f"pinn-{cmd.replace('_', '-')}" else prog


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with the house conventions: defaults shown in ``--help`` (once: not where the help says it
    already, nor a None default), the program named as it was invoked (``pinn-CMD`` or ``python -m ...``), the
    description without reST markup, and bad options reported on one line (``error: ...``, exit 2) instead of the
    usage block."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        if kwargs.get("prog"):
            kwargs["prog"] = _invoked(kwargs["prog"])
        if kwargs.get("description"):
            kwargs["description"] = _plain(kwargs["description"])
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR)


# Numeric options: argparse ``type=`` helpers, so that every command checks its numbers alike and before any work
# (a bad one is ``error: PROG: argument --X: must be ...``, exit 2).
def int_range(lo: int, hi: int = INT32_MAX, what: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``lo`` to ``hi`` (``what`` says why, in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            why = f" ({what})" if what else ""
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}{why}, got {text!r}")
        return value

    return parse


def float_range(lo: float = -math.inf, hi: float = math.inf, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``lo`` to ``hi`` (``above``: greater than ``lo``)."""
    bounds = [f"{'>' if above else '>='} {lo:g}"] if math.isfinite(lo) else []
    bounds += [f"<= {hi:g}"] if math.isfinite(hi) else []
    wanted = f"a number from {lo:g} to {hi:g}" if len(bounds) == 2 and not above else \
        " ".join(["a finite number", " and ".join(bounds)]).rstrip()

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if above else value >= lo) and value <= hi):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


uint32 = int_range(0, UINT32_MAX, "a seed is a uint32")
positive_int = int_range(1)
nonneg_int = int_range(0)
finite_float = float_range()
positive_float = float_range(0.0, above=True)
