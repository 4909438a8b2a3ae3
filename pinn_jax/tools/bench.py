"""Benchmark: generations per second, environment steps per second, scaling, and a Python-loop baseline.

``python -m pinn_jax bench [--out bench_results] [--repeats 5] [--quick | --tiny]`` measures

* one generation at paper scale (attention neuron, MLP and linear policies; CMA-ES; population
  256 x 16 rollouts x 1000 steps on the hard start), timing the real ``Trainer.run(state, 1)``:
  seconds per generation (median, min, max over ``--repeats`` runs after a warm-up), generations
  per second, environment steps per second, process CPU seconds per generation, and the split into
  the strategy's ask + tell and the population's evaluation (each compiled on its own);
* the compile time of the generation function (``lower`` + ``compile``);
* peak host memory (RSS) and, on an accelerator, its peak device memory;
* scaling curves of seconds per generation against the population, the number of rollouts and the
  number of observation features (attention neuron, extra features as noise features), with
  ``--curve-steps`` steps per episode (200 by default) so the full grid stays affordable on a CPU;
* a baseline measured in the same run: the same policy and environment stepped one member, one
  episode, one step at a time from Python (a jitted single-agent policy step and a jitted
  environment step per iteration, as a non-vectorised implementation does), extrapolated to a
  generation, and the speed-up of the compiled generation over it;
* the device, CPU model and cores, versions and the load average (timings on a shared machine
  vary: compare them with the load and with the CPU seconds).

It writes ``bench.json``, ``bench.md`` (the tables quoted in the README) and ``bench_scaling.png``
to ``--out``. ``--quick`` uses a reduced grid and 100 steps per episode for the curves; ``--tiny``
(for tests) shrinks everything (population 8, 2 rollouts, 20 steps, 2 repeats).

``--vision`` measures the image envs instead (:mod:`pinn_jax.tools.bench_vision`): per game, the vision
attention neuron and the MLP baseline at ``--population`` x ``--rollouts`` x ``--steps`` (256 x 8 x 100 by
default), where the time goes, and the policy's FLOP/memory floor at the machine's measured peak; it writes
``bench_vision.json`` and ``bench_vision.md``.

Environment steps are counted as the lockstep simulation computes them: every episode runs its
full ``max_steps`` (finished episodes are frozen, not skipped), so a generation is
``population x rollouts x max_steps`` steps.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pinn_jax import artifacts, configs
from pinn_jax import config as config_lib
from pinn_jax.errors import ArgumentParser, cli, int_range, positive_int, uint32
from pinn_jax.experiment import Experiment, setup
from pinn_jax.rollout import evaluate_population
from pinn_jax.tools import bench_vision
from pinn_jax.tools.bench_report import _device_line, load_text, markdown, plot
from pinn_jax.tools.bench_report import g as _g
from pinn_jax.tools.bench_report import range_text as _range
from pinn_jax.tools.bench_report import times as _times
from pinn_jax.training.process import limit_lapack_threads
from pinn_jax.training.progress import Tracker
from pinn_jax.training.trainer import make_trainer

__all__ = ["Settings", "SETTINGS", "run", "run_vision", "measure_peak", "main", "REPORT_KEYS"]

POLICIES = {"attention_neuron": "cartpole_pi", "mlp": "cartpole_mlp", "linear": "cartpole_linear"}  # shipped configs
REPORT_KEYS = ("meta", "settings", "generation", "compile", "memory", "scaling", "baseline", "speedup")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to measure. ``population`` x ``rollouts`` x ``steps`` is the headline generation."""

    mode: str = "full"
    population: int = 256
    rollouts: int = 16
    steps: int = 1000
    repeats: int = 5
    curve_steps: int = 200
    curve_repeats: int = 5
    grid_population: tuple[int, ...] = (64, 256, 1024, 4096)
    grid_rollouts: tuple[int, ...] = (1, 4, 16, 64)
    grid_features: tuple[int, ...] = (5, 10, 20, 50, 100)
    baseline_steps: int = 500
    policies: tuple[str, ...] = ("attention_neuron", "mlp", "linear")
    split: bool = True
    seed: int = 0


SETTINGS = {
    "full": Settings(),
    "quick": Settings(mode="quick", curve_steps=100, grid_population=(64, 256, 1024), grid_rollouts=(1, 4, 16),
                      grid_features=(5, 20, 50), baseline_steps=300),
    "tiny": Settings(mode="tiny", population=8, rollouts=2, steps=20, repeats=2, curve_steps=20, curve_repeats=2,
                     grid_population=(4, 8), grid_rollouts=(1,), grid_features=(7,), baseline_steps=20),
}


# ------------------------------------------------------------------------------------------ helpers
def make_config(policy: str, population: int, rollouts: int, steps: int, num_noise: int = 0,
                seed: int = 0) -> config_lib.Config:
    """The paper's protocol (CMA-ES from zeros, sigma 0.1, hard start, common random numbers) with the policy
    of the shipped config named in ``POLICIES``."""
    return config_lib.from_dict({
        "seed": seed, "run_dir": "unused",
        "env": {"name": "CartPoleSwingUp-v0", "start": "hard", "max_steps": steps},
        "policy": config_lib.load(configs.resolve(POLICIES[policy])).to_dict()["policy"],
        "strategy": {"name": "CMA_ES", "population_size": population, "sigma_init": 0.1, "init_mean": "zeros"},
        "train": {"rollouts": rollouts, "common_random_numbers": True, "num_noise": num_noise, "log_every": 1},
    })


def _stats(wall: Sequence[float], cpu: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(wall), "min": min(wall), "max": max(wall), "n": len(wall),
            "runs": list(wall), "cpu_median": statistics.median(cpu)}


def timed(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Wall and process-CPU seconds of each ``fn()`` (which must block on its result).

    After ``warmup`` calls of each, the functions are timed round-robin, ``repeats`` times each, so
    a change of the machine's load affects them alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: _stats(wall[k], cpu[k]) for k in fns}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_memory() -> dict[str, Any] | None:
    """The default device's memory statistics (peak bytes in use) where the backend reports them."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - CPU backends may raise or return None
        return None
    if not stats:
        return None
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
    return {k: int(stats[k]) for k in keys if k in stats}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_info() -> dict[str, Any]:
    """Backend, device, CPU model/cores, versions, load average and relevant environment."""
    dev = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "backend": jax.default_backend(), "device": str(getattr(dev, "device_kind", dev.platform)),
        "device_count": jax.device_count(), "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity, "platform": platform.platform(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": _version("jaxlib"), "evosax": _version("evosax"), "numpy": np.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ------------------------------------------------------------------------------------------ measurements
def measure_generation(cfg: config_lib.Config | Experiment, repeats: int, split: bool = False,
                       parts: Callable[[Any, Any], dict[str, Callable[[], Any]]] | None = None) -> dict[str, Any]:
    """Time ``Trainer.run(state, 1)`` (one full generation) after compiling it; optionally the split, and the
    functions ``parts(trainer, state)`` gives (each ``NAME`` timed as ``NAME_sec``)."""
    tr = make_trainer(cfg)
    cfg, state = tr.cfg, tr.init()
    t0 = time.perf_counter()
    lowered = tr.run.lower(state, 1)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    box = [state]

    def one_generation() -> None:
        box[0], metrics = tr.run(box[0], 1)
        jax.block_until_ready((box[0], metrics))

    fns = {"generation": one_generation}
    if split:
        fns.update(_split_fns(tr, state))
    if parts is not None:
        fns.update(parts(tr, state))
    times = timed(fns, repeats)
    gen = times["generation"]
    pop, rollouts, steps = cfg.strategy.population_size, cfg.train.rollouts, cfg.train_steps
    env_steps = pop * rollouts * steps
    out: dict[str, Any] = {
        "policy": cfg.policy.name, "num_params": tr.num_params, "obs_dim": tr.obs_dim, "population": pop,
        "rollouts": rollouts, "steps": steps, "env_steps_per_gen": env_steps,
        "sec_per_gen": gen, "gen_per_sec": 1.0 / gen["median"], "env_steps_per_sec": env_steps / gen["median"],
        "cpu_sec_per_gen": gen["cpu_median"], "trace_s": t1 - t0, "compile_s": t2 - t1,
    }
    out.update({f"{name}_sec": t for name, t in times.items() if name != "generation"})
    return out


def _split_fns(tr: Any, state: Any) -> dict[str, Callable[[], Any]]:
    """Ask + tell (with random fitness) and the population's evaluation, each one compiled call."""
    cfg, strategy = tr.cfg, tr.strategy
    pop_size = cfg.strategy.population_size

    @jax.jit
    def ask_tell(es_state: Any, key: jax.Array) -> Any:
        k_ask, k_tell, k_fit = jax.random.split(key, 3)
        population, es_state = strategy.ask(k_ask, es_state)
        return strategy.tell(k_tell, population, jax.random.normal(k_fit, (pop_size,)), es_state)

    @jax.jit
    def evaluate(population: Any, key: jax.Array) -> jax.Array:
        return evaluate_population(tr.policy, tr.env, tr.env_params, population, key, cfg.train.rollouts,
                                   cfg.train_steps, cfg.train.common_random_numbers)

    key = jax.random.PRNGKey(1)
    population, _ = jax.jit(strategy.ask)(key, state.es_state)
    return {"ask_tell": lambda: jax.block_until_ready(ask_tell(state.es_state, key)),
            "evaluate": lambda: jax.block_until_ready(evaluate(population, key))}


def measure_baseline(cfg: config_lib.Config, steps_per_block: int, blocks: int) -> dict[str, Any]:
    """One member, one episode, one step at a time from Python: jitted policy step + jitted env step.

    Episodes restart when done (terminated or ``max_steps``); every step reads the reward and the
    done flag back to Python, as a plain loop over an environment does. Seconds per step are
    extrapolated to a generation's evaluation (``population x rollouts x max_steps`` steps).
    """
    limit_lapack_threads()
    exp = setup(cfg)
    policy, env, env_params, obs_dim = exp.policy, exp.env, exp.env_params, exp.obs_dim
    params = policy.init(jax.random.PRNGKey(0), obs_dim)
    prepared = jax.jit(policy.prepare)(params)
    policy_step = jax.jit(policy.step)
    reset = jax.jit(env.reset_env)

    @jax.jit
    def env_step(key: jax.Array, t: jax.Array, state: Any, action: jax.Array) -> tuple:
        obs, state, reward, terminated, _ = env.step_env(jax.random.fold_in(key, t), state, action, env_params)
        return obs, state, reward, terminated

    key = jax.random.PRNGKey(0)
    sim: dict[str, Any] = {"episode": 0}

    def new_episode() -> None:
        k_reset, sim["key"] = jax.random.split(jax.random.fold_in(key, sim["episode"]))
        sim["obs"], sim["state"] = reset(k_reset, env_params)
        sim["pstate"] = policy.initial_state(obs_dim)
        sim["act"] = jnp.zeros((policy.act_dim,), jnp.float32)
        sim["t"], sim["ret"] = 0, 0.0
        sim["episode"] += 1

    def run_steps(n: int) -> None:
        for _ in range(n):
            sim["pstate"], sim["act"], _ = policy_step(prepared, sim["pstate"], sim["obs"], sim["act"])
            sim["obs"], sim["state"], reward, terminated = env_step(sim["key"], jnp.int32(sim["t"]), sim["state"],
                                                                    sim["act"])
            sim["ret"] += float(reward)
            sim["t"] += 1
            if bool(terminated) or sim["t"] >= cfg.train_steps:
                new_episode()

    new_episode()
    run_steps(20)  # compile and warm up
    per_step = [t / steps_per_block for t in _block_times(run_steps, steps_per_block, blocks)]
    med = statistics.median(per_step)
    gen_steps = cfg.strategy.population_size * cfg.train.rollouts * cfg.train_steps
    return {"policy": cfg.policy.name, "sec_per_step": {"median": med, "min": min(per_step), "max": max(per_step),
                                                        "n": len(per_step), "runs": per_step},
            "steps_per_sec": 1.0 / med, "steps_timed": steps_per_block * blocks,
            "extrapolated_sec_per_gen": med * gen_steps, "env_steps_per_gen": gen_steps}


def _block_times(run_steps: Callable[[int], None], n: int, blocks: int) -> list[float]:
    out = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        run_steps(n)
        out.append(time.perf_counter() - t0)
    return out


def measurements(s: Settings) -> int:
    """How many configs ``run`` measures: one generation per policy, then each point of the scaling grids."""
    return len(s.policies) + len(s.grid_population) + len(s.grid_rollouts) + len(s.grid_features)


def measure_curves(s: Settings, log: Callable[[str], None],
                   done: Callable[[str], None] = lambda what: None) -> dict[str, list[dict[str, Any]]]:
    """Seconds per generation against population, rollouts and features (attention neuron)."""
    policy, curves = "attention_neuron", {"population": [], "rollouts": [], "features": []}
    grids = [("population", s.grid_population), ("rollouts", s.grid_rollouts), ("features", s.grid_features)]
    for axis, values in grids:
        for v in values:
            pop = v if axis == "population" else s.population
            rollouts = v if axis == "rollouts" else s.rollouts
            noise = v - 5 if axis == "features" else 0
            if noise < 0:
                raise ValueError(f"feature counts start at the env's 5 observations, got {v}")
            r = measure_generation(make_config(policy, pop, rollouts, s.curve_steps, noise, s.seed), s.curve_repeats)
            r["value"] = v
            curves[axis].append(_compact(r))
            log(f"  {axis}={v}: {_range(r['sec_per_gen'])} s/gen ({r['env_steps_per_sec']:.3g} steps/s)")
            done(f"{axis}={v}")
    return curves


def _compact(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("value", "policy", "num_params", "obs_dim", "population", "rollouts", "steps", "env_steps_per_gen",
            "sec_per_gen", "gen_per_sec", "env_steps_per_sec", "cpu_sec_per_gen", "compile_s")
    return {k: r[k] for k in keep if k in r}


# ------------------------------------------------------------------------------------------ the run
def run(s: Settings, out: Path | None = None, log: Callable[[str], None] = print,
        done: Callable[[str], None] = lambda what: None) -> dict[str, Any]:
    """Measure everything in ``s``; write ``bench.json``, ``bench.md`` and ``bench_scaling.png`` to ``out``. ``log``
    takes each line of results, ``done`` the name of each of the :func:`measurements` as it ends."""
    t_start = time.perf_counter()
    blas = limit_lapack_threads()
    meta = device_info()
    meta["lapack_threads_limited"] = blas
    log(f"pinn_jax.tools.bench ({s.mode}): {meta['backend']} {meta['device']} | {meta['cpu_model']} "
        f"({meta['cpu_affinity']} cores) | jax {meta['jax']} | load {load_text(meta['loadavg_start'])}")
    generation, compile_times, memory, baseline, speedup = {}, {}, {"peak_rss_bytes": {}}, {}, {}
    for name in s.policies:
        log(f"generation: {name}, population {s.population} x {s.rollouts} rollouts x {s.steps} steps ...")
        cfg = make_config(name, s.population, s.rollouts, s.steps, seed=s.seed)
        r = measure_generation(cfg, s.repeats, split=s.split)
        generation[name] = r
        compile_times[name] = {"trace_s": r["trace_s"], "compile_s": r["compile_s"],
                               "total_s": r["trace_s"] + r["compile_s"]}
        memory["peak_rss_bytes"][name] = peak_rss_bytes()
        log(f"  {_range(r['sec_per_gen'])} s/gen, {_g(r['gen_per_sec'])} gen/s, {_g(r['env_steps_per_sec'])} env "
            f"steps/s, CPU {_g(r['cpu_sec_per_gen'])} s/gen, compile {compile_times[name]['total_s']:.1f} s"
            + (f"; ask+tell {_g(r['ask_tell_sec']['median'])} s, evaluation {_g(r['evaluate_sec']['median'])} s"
               if "ask_tell_sec" in r else ""))
        b = measure_baseline(cfg, s.baseline_steps, max(s.repeats, 2))
        baseline[name] = b
        speedup[name] = b["extrapolated_sec_per_gen"] / r["sec_per_gen"]["median"]
        log(f"  Python-loop baseline: {b['sec_per_step']['median'] * 1e6:.0f} us/step -> "
            f"{_g(b['extrapolated_sec_per_gen'])} s/gen extrapolated; speed-up {_times(speedup[name])}")
        done(name)
    log(f"scaling curves ({s.curve_steps} steps per episode) ...")
    scaling = measure_curves(s, log, done)
    memory["peak_rss_bytes"]["end"] = peak_rss_bytes()
    memory["device"] = device_memory()
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["wall_s"] = time.perf_counter() - t_start
    settings = dataclasses.asdict(s)
    report = {"meta": meta, "settings": settings, "generation": generation, "compile": compile_times,
              "memory": memory, "scaling": scaling, "baseline": baseline, "speedup": speedup}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path, png_path = out / artifacts.BENCH_JSON, out / artifacts.BENCH_MD, out / artifacts.BENCH_PNG
        artifacts.write_text(json_path, json.dumps(report, indent=1))
        artifacts.write_text(md_path, markdown(report))
        plot(report, png_path)
        log(f"wrote {json_path}, {md_path}, {png_path}")
    return report


# ------------------------------------------------------------------------------------------ image envs
def measure_peak(repeats: int, n: int | None = None, stream_mib: int = 1024) -> dict[str, Any]:
    """The machine's peak as the floor assumes it: float32 FLOP/s of an ``n x n`` matmul (2048 on a CPU, 8192 on an
    accelerator) and the memory bandwidth of ``x + 1`` in place over ``stream_mib`` MiB (read and write; a new
    result each time would time page faults), each the best of ``repeats`` timed runs (and the median)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    box = [jnp.zeros((stream_mib * 2**20 // 4,), jnp.float32)]
    matmul, stream = jax.jit(lambda a: a @ a), jax.jit(lambda x: x + 1.0, donate_argnums=0)

    def stream_once() -> None:
        box[0] = jax.block_until_ready(stream(box[0]))

    t = timed({"matmul": lambda: jax.block_until_ready(matmul(a)), "stream": stream_once}, max(repeats, 3))
    flops, nbytes = 2.0 * n ** 3, 2.0 * box[0].nbytes
    return {"flops_per_s": flops / t["matmul"]["min"], "flops_median": flops / t["matmul"]["median"],
            "bytes_per_s": nbytes / t["stream"]["min"], "bytes_median": nbytes / t["stream"]["median"],
            "matmul_n": n, "stream_bytes": box[0].nbytes, "n": t["matmul"]["n"]}


def vision_measurements(s: bench_vision.VisionSettings) -> int:
    """How many steps ``run_vision`` takes: the peak, then one generation per game and policy."""
    return 1 + len(s.games) * len(s.policies)


def run_vision(s: bench_vision.VisionSettings, out: Path | None = None, log: Callable[[str], None] = print,
               done: Callable[[str], None] = lambda what: None) -> dict[str, Any]:
    """Measure the image envs of ``s`` (:mod:`pinn_jax.tools.bench_vision`); write ``bench_vision.json`` and
    ``bench_vision.md`` to ``out``. ``log`` and ``done`` as in :func:`run`."""
    t_start = time.perf_counter()
    meta = device_info()
    meta["lapack_threads_limited"] = limit_lapack_threads()
    log(f"pinn_jax.tools.bench --vision ({s.mode}): {_device_line(meta)} | jax {meta['jax']} | "
        f"load {load_text(meta['loadavg_start'])}")
    peak = measure_peak(s.repeats)
    log(f"peak: {_g(peak['flops_per_s'] / 1e9)} GFLOP/s ({peak['matmul_n']}² matmul), "
        f"{_g(peak['bytes_per_s'] / 1e9)} GB/s (x + 1)")
    done("peak")
    runs = []
    for game in s.games:
        for name in s.policies:
            log(f"{game}, {name}: population {s.population} x {s.rollouts} rollouts x {s.steps} steps ...")
            exp = setup(bench_vision.make_config(game, name, s.population, s.rollouts, s.steps, s.seed))
            shape = tuple(jax.eval_shape(exp.env.reset_env, jax.random.PRNGKey(0), exp.env_params)[0].shape)
            r = measure_generation(exp, s.repeats, split=True, parts=bench_vision.part_fns)
            cost = bench_vision.step_cost(exp.policy, shape, exp.num_params, s.rollouts)
            r.update(game=game, policy=name, obs_shape="×".join(map(str, shape)), step_cost=cost,
                     xla_step_cost=bench_vision.xla_step_cost(exp.policy, exp.template, shape),
                     floor=bench_vision.floor(cost, r["env_steps_per_gen"], peak))
            runs.append(r)
            log(f"  {_range(r['sec_per_gen'])} s/gen, {_g(r['env_steps_per_sec'])} env steps/s; "
                + ", ".join(f"{p} {_g(r[p + '_sec']['median'])} s" for p in bench_vision.PARTS)
                + f"; floor {_g(r['floor']['floor_s'])} s")
            done(f"{game} {name}")
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["wall_s"] = time.perf_counter() - t_start
    report = {"meta": meta, "settings": dataclasses.asdict(s), "peak": peak, "runs": runs}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / artifacts.BENCH_VISION_JSON, out / artifacts.BENCH_VISION_MD
        artifacts.write_text(json_path, json.dumps(report, indent=1))
        artifacts.write_text(md_path, bench_vision.markdown(report))
        log(f"wrote {json_path}, {md_path}")
    return report


# ------------------------------------------------------------------------------------------ CLI
def _ints(lo: int, what: str = "") -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type``: comma-separated integers, each from ``lo`` (:func:`~pinn_jax.errors.int_range`)."""
    one = int_range(lo, what=what)
    return lambda text: tuple(one(v) for v in text.split(","))


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pinn_jax bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_results", metavar="DIR", help="output directory")
    p.add_argument("--force", action="store_true",
                   help="replace the benchmark's files in --out (else they are refused before anything runs)")
    p.add_argument("--seed", type=uint32, default=0, help="seed of the benchmarked configs (initial state, episodes)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced grid, 100 steps per episode for the curves")
    mode.add_argument("--tiny", action="store_true", help="everything tiny (tests): population 8, 2 rollouts, 20 steps")
    p.add_argument("--repeats", type=positive_int, help="timed repetitions per figure (default 5; tiny 2)")
    p.add_argument("--curve-steps", type=positive_int, help="steps per episode for the scaling curves (default 200)")
    p.add_argument("--policies", help="comma-separated subset of attention_neuron,mlp,linear (--vision: "
                   "vision_attention,mlp)")
    p.add_argument("--grid-population", type=_ints(2), help="e.g. 64,256,1024,4096")
    p.add_argument("--grid-rollouts", type=_ints(1), help="e.g. 1,4,16,64")
    p.add_argument("--grid-features", type=_ints(5, "the environment's 5 observations, then noise"),
                   help="e.g. 5,10,20,50,100")
    p.add_argument("--no-split", action="store_true", help="skip the ask+tell / evaluation split")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every 30 s instead")
    vision = p.add_argument_group("image envs", "--vision measures them instead (tiny with --tiny)")
    vision.add_argument("--vision", action="store_true", help="per game: vision attention neuron and MLP baseline")
    vision.add_argument("--games", help=f"comma-separated subset of {','.join(bench_vision.GAMES)}")
    vision.add_argument("--population", type=int, help="population (default 256)")
    vision.add_argument("--rollouts", type=int, help="rollouts per member (default 8)")
    vision.add_argument("--steps", type=int, help="steps per episode (default 100)")
    args = p.parse_args(argv)
    if args.vision:
        return _main_vision(p, args)
    if any(getattr(args, k) is not None for k in ("games", "population", "rollouts", "steps")):
        p.error("--games, --population, --rollouts and --steps go with --vision")
    s = SETTINGS["tiny" if args.tiny else "quick" if args.quick else "full"]
    updates: dict[str, Any] = {}
    if args.repeats is not None:
        updates.update(repeats=args.repeats, curve_repeats=args.repeats)
    if args.curve_steps is not None:
        updates["curve_steps"] = args.curve_steps
    if args.policies:
        names = tuple(n.strip() for n in args.policies.split(","))
        bad = [n for n in names if n not in POLICIES]
        if bad:
            p.error(f"unknown policies {bad}; choose from {', '.join(POLICIES)}")
        updates["policies"] = names
    for key in ("grid_population", "grid_rollouts", "grid_features"):
        if getattr(args, key):
            updates[key] = getattr(args, key)
    if args.no_split:
        updates["split"] = False
    updates["seed"] = args.seed
    s = dataclasses.replace(s, **updates)
    out = artifacts.output_dir(args.out, "--out", artifacts.BENCH_FILES, args.force)
    with Tracker(measurements(s), "bench", bar=not args.no_progress) as t:
        run(s, out, log=t.log, done=lambda what: t.advance(1, what))
    return 0


def _names(p: ArgumentParser, option: str, text: str, known: Sequence[str]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    bad = [n for n in names if n not in known]
    if bad:
        p.error(f"unknown {option.lstrip('-')} {bad}; choose from {', '.join(known)}")
    return names


def _main_vision(p: ArgumentParser, args: Any) -> int:
    """``bench --vision``: the options that apply, checked, then :func:`run_vision`."""
    vector = {"--quick": args.quick, "--curve-steps": args.curve_steps, "--grid-population": args.grid_population,
              "--grid-rollouts": args.grid_rollouts, "--grid-features": args.grid_features, "--no-split": args.no_split}
    given = [k for k, v in vector.items() if v]
    if given:
        p.error(f"{', '.join(given)}: not with --vision (no scaling curves; --steps sets the episodes)")
    updates: dict[str, Any] = {"seed": args.seed}
    for key in ("population", "rollouts", "steps", "repeats"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                p.error(f"--{key} must be >= 1")
            updates[key] = value
    if args.games:
        updates["games"] = _names(p, "--games", args.games, list(bench_vision.GAMES))
    if args.policies:
        updates["policies"] = _names(p, "--policies", args.policies, list(bench_vision.POLICIES))
    s = dataclasses.replace(bench_vision.VISION_SETTINGS["tiny" if args.tiny else "full"], **updates)
    out = artifacts.output_dir(args.out, "--out", artifacts.BENCH_VISION_FILES, args.force)
    with Tracker(vision_measurements(s), "bench", bar=not args.no_progress) as t:
        run_vision(s, out, log=t.log, done=lambda what: t.advance(1, what))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
