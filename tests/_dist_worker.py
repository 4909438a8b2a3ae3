"""Subprocess side of tests/test_distributed.py (JAX's device count and ``jax.distributed`` must be
set up before JAX starts, so these run in fresh interpreters).

    python tests/_dist_worker.py sharded                       # run with 4 forced CPU devices
    python tests/_dist_worker.py multiprocess PORT PID NPROC RUN_DIR SHARED_DIR

Prints one line ``RESULT <json>`` at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import sys

import numpy as np
from conftest import counting_traces, tiny_dict  # noqa: E402 - tests/ is this script's directory

from pinn_jax import config as config_lib
from pinn_jax.training import distributed


def _history(m) -> dict[str, list[float]]:
    return {k: np.asarray(v).astype(float).tolist() for k, v in m.items()}


def sharded() -> dict:
    import jax

    from pinn_jax.config import ConfigError
    from pinn_jax.train import main
    from pinn_jax.training.trainer import make_trainer

    assert jax.device_count() == 4, jax.devices()
    mesh = distributed.make_mesh()
    out: dict = {"devices": jax.device_count()}
    for crn in (True, False):
        cfg = config_lib.from_dict(tiny_dict("unused", train={"common_random_numbers": crn}))
        single = make_trainer(cfg)  # no mesh: everything on the default device
        s1, m1 = single.run(single.init(), 3)
        seen = []

        def spy(pop, seen=seen):  # reports the sharding XLA gave each population leaf inside the program
            record = lambda x: lambda s: seen.append(([str(a) for a in s.spec], s.shard_shape(x.shape)))  # noqa: E731
            jax.tree.map(lambda x: jax.debug.inspect_array_sharding(x, callback=record(x)), pop)
            return pop

        multi = make_trainer(cfg, constrain=spy, mesh=mesh)
        state0 = multi.init()
        s4, m4 = multi.run(state0, 3)
        out[f"crn={crn}"] = {
            "single": _history(m1), "sharded": _history(m4),
            "mean_single": np.asarray(s1.es_state.mean).tolist(), "mean_sharded": np.asarray(s4.es_state.mean).tolist(),
            "population_shardings": [[spec, list(shape)] for spec, shape in seen],
            "state_in_replicated": all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 4
                                       for x in jax.tree.leaves(state0)),
            "state_out_replicated": all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 4
                                        for x in jax.tree.leaves(s4)),
            "metrics_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(m4)),
        }
    # a population that does not divide over the devices: one-line ConfigError, from make_trainer and the CLI
    bad = config_lib.from_dict(tiny_dict("unused", strategy={"population_size": 6}))
    try:
        make_trainer(bad, mesh=mesh)
        out["error"] = None
    except ConfigError as e:
        out["error"] = str(e)
    cfg_file = pathlib.Path(sys.argv[2]) / "bad.yaml"
    cfg_file.write_text(json.dumps(tiny_dict(str(cfg_file.parent / "run"), strategy={"population_size": 6})))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        out["cli_rc"] = main(["--config", str(cfg_file), "--no-progress"])
    out["cli_err"] = err.getvalue()
    return out


def multiprocess(port: str, pid: str, nproc: str, run_dir: str, shared_dir: str) -> dict:
    from pinn_jax.train import main, train

    sets = ["distributed.enabled=true", f"distributed.coordinator_address=127.0.0.1:{port}",
            f"distributed.num_processes={nproc}", f"distributed.process_id={pid}"]
    cfg_file = pathlib.Path(shared_dir).parent / f"tiny_{pid}.yaml"
    cfg_file.write_text(json.dumps(tiny_dict(run_dir)))
    # 1) the CLI: initialises jax.distributed from the config, trains, checkpoints from process 0 only
    rc = main(["--config", str(cfg_file), "--no-progress"] + sum((["--set", s] for s in sets), []))

    import jax

    out: dict = {"cli_rc": rc, "process_index": jax.process_index(), "process_count": jax.process_count(),
                 "device_count": jax.device_count(), "local_device_count": jax.local_device_count()}
    # 2) train() on a directory every process sees, then resume it (all processes restore together)
    cfg = config_lib.from_dict(config_lib.apply_overrides(tiny_dict(shared_dir, train={"generations": 2}), sets))
    with counting_traces() as traces:
        tr, _, rows_a = train(cfg, progress=False)
    cfg3 = config_lib.from_dict(config_lib.apply_overrides(tiny_dict(shared_dir), sets))
    tr, state, rows_b = train(cfg3, resume=True, progress=False, trainer=tr)
    out["rows"] = rows_a + rows_b
    out["mean"] = np.asarray(state.es_state.mean).tolist()  # replicated: readable on every process
    out["generation"] = int(state.generation)
    out["traces"] = len(traces)
    return out


if __name__ == "__main__":
    mode = sys.argv[1]
    result = sharded() if mode == "sharded" else multiprocess(*sys.argv[2:7])
    print("RESULT " + json.dumps(result), flush=True)
