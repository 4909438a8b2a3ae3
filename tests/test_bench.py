"""The benchmark CLI on a tiny setting (no timing is asserted)."""

from __future__ import annotations

import json
import re

import pytest

from pinn_jax.tools import bench, bench_report


def test_tiny_benchmark_writes_complete_report(tmp_path, capsys):
    assert bench.main(["--tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    captured = capsys.readouterr()
    out = captured.out  # --no-progress: status lines, and the results' lines, on stdout (stderr: errors only)
    n = bench.measurements(bench.SETTINGS["tiny"])
    assert "bench 1/" in out and f"bench {n}/{n}  features=7" in out and captured.err == ""
    assert re.search(r"\| load \d+\.\d\d/\d+\.\d\d/\d+\.\d\d\n", out) and "load [" not in out  # not raw floats
    assert set(bench.REPORT_KEYS) <= set(report)
    meta = report["meta"]
    for key in ("backend", "device", "cpu_model", "cpu_count", "jax", "evosax", "loadavg_start", "loadavg_end"):
        assert key in meta
    s = report["settings"]
    assert (s["mode"], s["population"], s["rollouts"], s["steps"], s["repeats"]) == ("tiny", 8, 2, 20, 2)
    assert set(report["generation"]) == {"attention_neuron", "mlp", "linear"}
    for name, r in report["generation"].items():
        for key in ("sec_per_gen", "gen_per_sec", "env_steps_per_sec", "cpu_sec_per_gen", "ask_tell_sec",
                    "evaluate_sec", "num_params"):
            assert key in r, (name, key)
        st = r["sec_per_gen"]
        assert st["n"] == 2 and st["min"] <= st["median"] <= st["max"]
        assert r["env_steps_per_gen"] == 8 * 2 * 20
        assert r["env_steps_per_sec"] == pytest.approx(r["env_steps_per_gen"] / st["median"])
        assert report["compile"][name]["total_s"] > 0
        assert report["baseline"][name]["sec_per_step"]["median"] > 0
        assert report["speedup"][name] > 0
    assert report["generation"]["attention_neuron"]["num_params"] == 913
    assert report["memory"]["peak_rss_bytes"]["end"] > 0
    for axis in ("population", "rollouts", "features"):
        assert report["scaling"][axis], axis
        for row in report["scaling"][axis]:
            assert {"value", "sec_per_gen", "env_steps_per_sec"} <= set(row)
    assert [r["obs_dim"] for r in report["scaling"]["features"]] == s["grid_features"]
    md = (tmp_path / "bench.md").read_text()
    assert "| attention_neuron | 913 |" in md and "speed-up" in md
    assert (tmp_path / "bench_scaling.png").stat().st_size > 0
    assert "20 instead of 20 steps" not in md and "Shorter episodes" not in md  # the curves' episodes are not shorter
    # one panel per axis measured at two values or more: tiny's rollouts and features are single points
    assert bench_report.curve_axes(report) == ["population"] and len(bench_report.figure(report).axes) == 1


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--policies", "transformer"])
    assert "unknown policies" in capsys.readouterr().err
