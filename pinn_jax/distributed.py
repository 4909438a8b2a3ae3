"""Multi-process set-up through JAX's own distributed runtime (``jax.distributed``)."""

from __future__ import annotations

import jax

from pinn_jax.config import DistributedConfig


def initialize(cfg: DistributedConfig) -> None:
    """Call ``jax.distributed.initialize`` when enabled; with one process nothing changes.

    Unset fields are taken from the environment by JAX (e.g. SLURM, or ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``). On CPU the cross-process collectives use gloo.
    """
    if not cfg.enabled:
        return
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                               process_id=cfg.process_id)
