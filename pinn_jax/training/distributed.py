"""Process set-up and scale-out. Set-up: the host's BLAS threads (:func:`limit_lapack_threads`) and
``jax.distributed`` (:func:`initialize`), both called by the host loop before the first compile. Scale-out
through JAX's own runtime: ``jax.distributed`` for several processes (hosts), and a
1-D device :class:`~jax.sharding.Mesh` (axis ``"pop"``) over all devices of all processes.

The population is split over the mesh (``NamedSharding(mesh, P("pop"))``), every member's
rollouts run on the device that holds it, and the fitness is gathered back (replicated) for the
strategy's ``tell``. ``ask`` and ``tell``, the strategy state, PRNG key and metrics stay replicated,
so every process holds the same values. Everything is one ``jit`` program partitioned by XLA, so the numbers do
not depend on how many devices there are (up to float rounding): episode keys are drawn for the
whole population and only then split, with or without common random numbers.

Rules: ``strategy.population_size`` must be a multiple of the total device count (checked with
a one-line :class:`~pinn_jax.config.ConfigError`); rollouts are never split over devices.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
import threadpoolctl
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pinn_jax.config import Config, ConfigError, DistributedConfig

AXIS = "pop"


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
                          "pinn_jax.training.distributed.initialize before any JAX computation (or use the CLI)") from None
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


def is_multiprocess() -> bool:
    """More than one JAX process takes part (``jax.distributed`` initialised with several)."""
    return jax.process_count() > 1


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with axis ``"pop"`` over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def population_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (population) axis split over the mesh, the rest of each leaf whole."""
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def constrain(mesh: Mesh) -> Callable[[Any], Any]:
    """For ``make_trainer``: shard every leaf of the population pytree over the ``"pop"`` axis."""
    sharding = population_sharding(mesh)
    return lambda tree: jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def replicate(mesh: Mesh) -> Callable[[Any], Any]:
    """Inside ``jit``: gather every leaf of a pytree to a full copy on every device."""
    sharding = replicated(mesh)
    return lambda tree: jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Place a host value (identical on every process) as global replicated arrays on ``mesh``.

    Uses ``jax.make_array_from_process_local_data``, valid with several processes: each process
    supplies its own (identical) copy for its local devices. Leaves may be jax or numpy arrays.
    """
    sharding = replicated(mesh)

    def put(x: Any) -> jax.Array:
        x = np.asarray(jax.device_get(x))
        return jax.make_array_from_process_local_data(sharding, x, x.shape)

    return jax.tree.map(put, tree)


def check_population(cfg: Config, num_devices: int | None = None) -> None:
    """One-line :class:`ConfigError` unless the population divides evenly over the devices."""
    n = jax.device_count() if num_devices is None else num_devices
    pop = cfg.strategy.population_size
    if pop % n:
        raise ConfigError(f"config key 'strategy.population_size' must be a multiple of the device count "
                          f"({n} devices over {jax.process_count()} process(es)), got {pop}")


def mesh_for(cfg: Config) -> Mesh | None:
    """The population mesh when there is more than one device (or ``distributed.enabled``), else None.

    With one process and one device this returns None and training is unchanged.
    """
    if jax.device_count() == 1 and not (cfg.distributed.enabled or is_multiprocess()):
        return None
    check_population(cfg)
    return make_mesh()


def barrier(name: str) -> None:
    """Wait until every process got here (no-op with one process)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
