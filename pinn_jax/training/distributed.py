"""Scale-out through JAX's own runtime (the process set-up, ``jax.distributed.initialize``, is in
:mod:`pinn_jax.training.process`): ``jax.distributed`` for several processes (hosts), and a
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

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pinn_jax.config import Config, ConfigError

AXIS = "pop"


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
