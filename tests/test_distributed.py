"""Scale-out: the population sharded over devices (4 forced CPU devices) and over two processes
joined by ``jax.distributed`` on 127.0.0.1, against single-device training of the same config.

JAX's device count and distributed runtime are fixed when JAX starts, so the sharded runs happen
in subprocesses (tests/_dist_worker.py), each with a timeout so that a hang fails instead of blocking.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import tiny_dict

from pinn_jax import config as config_lib
from pinn_jax.config import ConfigError
from pinn_jax.train import train
from pinn_jax.training import checkpoint as ckpt
from pinn_jax.training import distributed
from pinn_jax.training.metrics import read_csv

WORKER = pathlib.Path(__file__).resolve().parent / "_dist_worker.py"
FITNESS = ("fitness_max", "fitness_mean", "fitness_min", "fitness_std", "best_so_far")


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_", "OMPI_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    return env


def _result(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_population_must_be_a_multiple_of_the_device_count():
    cfg = config_lib.from_dict(tiny_dict("unused", strategy={"population_size": 6}))
    with pytest.raises(ConfigError, match=r"^config key 'strategy.population_size' must be a multiple of the "
                                          r"device count \(4 devices over 1 process\(es\)\), got 6$"):
        distributed.check_population(cfg, num_devices=4)
    distributed.check_population(cfg, num_devices=3)
    distributed.check_population(cfg, num_devices=1)
    # one process, one device, distributed off: no mesh, training is unchanged
    assert jax.device_count() == 1 and distributed.mesh_for(cfg) is None


def test_sharded_over_4_devices_equals_single_device(tmp_path):
    proc = subprocess.run([sys.executable, str(WORKER), "sharded", str(tmp_path)], env=_env(4), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _result(proc.stdout)
    assert out["devices"] == 4
    for crn in (True, False):  # common random numbers (default) and independent keys per member
        r = out[f"crn={crn}"]
        for k in FITNESS:
            np.testing.assert_allclose(r["sharded"][k], r["single"][k], rtol=1e-5, atol=1e-5, err_msg=f"{crn} {k}")
        np.testing.assert_allclose(r["mean_sharded"], r["mean_single"], rtol=1e-5, atol=1e-6)
        # the population really is split: each of the 4 devices evaluates 2 of the 8 members
        assert r["population_shardings"], "population sharding was not inspected"
        for spec, shard_shape in r["population_shardings"]:
            assert spec[:1] == ["pop"] and shard_shape[0] == 2, (spec, shard_shape)
        assert r["state_in_replicated"] and r["state_out_replicated"] and r["metrics_replicated"]
    assert out["error"] == ("config key 'strategy.population_size' must be a multiple of the device count "
                            "(4 devices over 1 process(es)), got 6")
    assert out["cli_rc"] == 2 and out["cli_err"].strip() == f"error: {out['error']}"


def test_two_processes_with_jax_distributed_equal_one_process(tmp_path):
    port = _free_port()
    runs = [tmp_path / f"run_p{i}" for i in range(2)]  # per-process dirs: process 1 must write nothing
    shared = tmp_path / "shared"  # one dir seen by both (as on a shared filesystem), trained then resumed
    procs = [subprocess.Popen([sys.executable, str(WORKER), "multiprocess", str(port), str(i), "2", str(runs[i]),
                               str(shared)], env=_env(2), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        # meanwhile, the reference: this (single-device, single-process) interpreter
        ref_tr, ref_state, ref_rows = train(config_lib.from_dict(tiny_dict(tmp_path / "ref")), progress=False)
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    results = [_result(stdout) for stdout, _ in outs]
    for i, r in enumerate(results):
        assert r["cli_rc"] == 0
        assert (r["process_index"], r["process_count"], r["device_count"], r["local_device_count"]) == (i, 2, 4, 2)
        assert r["generation"] == 3 and r["traces"] == 1
        np.testing.assert_allclose([row[k] for row in r["rows"] for k in FITNESS],
                                   [row[k] for row in ref_rows for k in FITNESS], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r["mean"], np.asarray(ref_state.es_state.mean), rtol=1e-5, atol=1e-6)
    assert results[0]["mean"] == results[1]["mean"]  # the strategy state is the same on both processes

    # only process 0 wrote: logs, config, checkpoints and params in its run dir; nothing from process 1
    assert not runs[1].exists()
    for run in (runs[0], shared):
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "3"]
        assert (run / "config.yaml").is_file() and (run / "params.npz").is_file()
        np.testing.assert_allclose([[row[k] for k in FITNESS] for row in read_csv(run)],
                                   [[row[k] for k in FITNESS] for row in ref_rows], rtol=1e-5, atol=1e-5)
        assert [row["generation"] for row in read_csv(run)] == [1, 2, 3]  # each row once
        assert not list(run.rglob("*process_1*"))
        # the checkpoint holds the same state as the single-process run and restores on one device
        restored, meta = ckpt.restore(run, ref_tr.init())
        assert meta["generation"] == 3
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(ref_state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
