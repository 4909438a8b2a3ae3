"""Process set-up, done once by the host before anything is compiled: ``jax.distributed`` for several processes
(hosts), the host BLAS threads that CMA-ES's ``eigh`` runs on, and how SIGINT/SIGTERM stop a run
(:class:`Interrupts`). Nothing here is part of the pure training core."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

import jax
import threadpoolctl

from pinn_jax.config import ConfigError, DistributedConfig


def initialize(cfg: DistributedConfig) -> None:
    """Call ``jax.distributed.initialize`` when ``cfg.enabled``; otherwise (one process) nothing changes.

    Fields left ``None`` come from the environment: ``JAX_COORDINATOR_ADDRESS`` (read by JAX),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here), else JAX's cluster detection
    (SLURM, Open MPI, Kubernetes, Cloud TPU) fills them in. On CPU the cross-process collectives
    use gloo. Must run before anything starts JAX's backend (arrays, ``jit``, ``jax.devices()``,
    or importing evosax's algorithms); calling it again once initialised does nothing.
    """
    if not cfg.enabled or jax.distributed.is_initialized():
        return
    num_processes = cfg.num_processes if cfg.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = cfg.process_id if cfg.process_id is not None else _env_int("JAX_PROCESS_ID")
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"config key 'distributed.num_processes' must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"config key 'distributed.process_id' must be in [0, {num_processes}), got {process_id}")
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=cfg.coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    except RuntimeError as e:
        if "must be called before" not in str(e):
            raise
        raise ConfigError("config key 'distributed.enabled' is set but JAX already started in this process; call "
                          "pinn_jax.training.process.initialize before any JAX computation (or use the CLI)") from None
    except ValueError as e:  # e.g. no coordinator address or process count, and no cluster detected
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"config section 'distributed': {first} (set distributed.* or JAX_COORDINATOR_ADDRESS, "
                          f"JAX_NUM_PROCESSES, JAX_PROCESS_ID)") from None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from None


def limit_lapack_threads(n: int = 1) -> list[str]:
    """Run the host BLAS/LAPACK that XLA:CPU calls for CMA-ES's ``eigh`` on ``n`` threads.

    OpenBLAS's worker threads spin-wait; sharing the cores with XLA's own thread pool (or with
    other processes) made one 913x913 ``eigh`` take up to 7 s instead of 0.06 s on a 2-core
    machine. Uses threadpoolctl; nothing is changed when ``OPENBLAS_NUM_THREADS`` is set, or when JAX runs on
    an accelerator (its ``eigh`` does not use the host's LAPACK there). Returns the file names of the
    libraries limited.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ or jax.default_backend() != "cpu":
        return []
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that jaxlib's LAPACK kernels use)

    threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    return [os.path.basename(i["filepath"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


class Interrupts:
    """SIGINT and SIGTERM as :class:`KeyboardInterrupt`: at once while generations are computed, but held back
    inside :meth:`held` blocks (logging, evaluation, checkpoint writes) until the block is done, so an interrupt
    never leaves a checkpoint or log row half written. Once one has been raised the run is stopping, and later
    signals (Ctrl-C pressed again) are ignored until the context exits: they would cut its last save and clean-up
    short; a stop still under way then is handed on to an enclosing :class:`Interrupts`. With ``exiting`` (a
    command line, whose process ends after the context) they stay ignored after a stop: JAX's clean-up at exit
    would print a traceback. The handlers are installed while the context is entered (main thread only; elsewhere
    signals cannot be handled anyway). This is the only signal handling of training."""

    def __init__(self, exiting: bool = False) -> None:
        self.exiting = exiting
        self._depth = 0
        self._pending: int | None = None
        self._stopping = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            if self._stopping and isinstance(outer := getattr(handler, "__self__", None), Interrupts):
                outer._stopping = True
            if self._stopping and self.exiting:
                handler = signal.SIG_IGN
            if handler is not None:
                signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._stopping:
            return
        if self._depth:
            self._pending = signum
            return
        self._stopping = True
        raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def held(self, then_raise: bool = True) -> Iterator[None]:
        """Hold signals during the block; afterwards raise the one that came (unless ``then_raise`` is off)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._pending is not None and not self._depth:
            signum, self._pending = self._pending, None
            self._stopping = True
            if then_raise:
                raise KeyboardInterrupt(f"signal {signum}")

