"""pinn_jax.study.curves: learning curves of (staged) runs, time to target, the figure."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pinn_jax.study import curves
from pinn_jax.training.metrics import EVAL_COLUMNS


def _eval_csv(run_dir, rows):
    run_dir.mkdir(parents=True)
    with (run_dir / "eval.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EVAL_COLUMNS, restval=0)
        w.writeheader()
        for g, ret, t in rows:
            w.writerow({"generation": g, "return_mean": ret, "wall_time": t})


def test_stages_continue_and_target_is_first_crossing(tmp_path):
    _eval_csv(tmp_path / "a", [(50, 100, 10.0), (100, 200, 20.0)])
    _eval_csv(tmp_path / "b", [(50, 300, 5.0), (100, 480, 9.0), (150, 470, 12.0)])
    c = curves.load_curve("staged", [tmp_path / "a", tmp_path / "b"])
    np.testing.assert_array_equal(c.generation, [50, 100, 150, 200, 250])
    np.testing.assert_allclose(c.seconds, [10, 20, 25, 29, 32])
    assert c.stages == (100,)
    assert c.first_reaching(472) == (200, 29.0)
    assert c.first_reaching(500) is None


def _config(run_dir, start):
    (run_dir / "config.yaml").write_text(f"env: {{start: {start}}}\n")


def test_a_cut_stage_hands_over_at_its_generation_and_other_starts_are_counted_not_drawn(tmp_path):
    _eval_csv(tmp_path / "up", [(50, 900, 10.0), (100, 950, 20.0), (150, 990, 30.0)])
    _eval_csv(tmp_path / "a", [(50, 100, 10.0), (100, 200, 30.0)])
    _eval_csv(tmp_path / "b", [(50, 300, 5.0), (100, 480, 9.0)])
    _config(tmp_path / "up", "upright")
    _config(tmp_path / "a", "hard")
    _config(tmp_path / "b", "hard")
    c = curves.load_curve("chain", [f"{tmp_path / 'up'}@120", f"{tmp_path / 'a'}@75", tmp_path / "b"])
    # up: cut at 120 (24 s, interpolated), not drawn; a: cut at 75 (20 s); b follows at 195 generations, 44 s
    np.testing.assert_array_equal(c.generation, [170, 245, 295])
    np.testing.assert_allclose(c.seconds, [34, 49, 53])
    np.testing.assert_array_equal(c.held_out, [100, 300, 480])
    assert c.stages == (120, 195) and len(c.not_drawn) == 1 and "'upright' starts, not 'hard'" in c.not_drawn[0]
    past = curves.load_curve("past", [f"{tmp_path / 'a'}@150", tmp_path / "b"])  # past the last row: its own pace
    np.testing.assert_allclose(past.seconds[-2:], [45 + 5, 45 + 9])
    with pytest.raises(curves.UserError, match="expected DIR@GENERATION with a generation >= 1, got"):
        curves.load_curve("bad", [f"{tmp_path / 'a'}@x"])


def test_cli_figure_and_summary(tmp_path, capsys):
    _eval_csv(tmp_path / "a", [(50, 100, 3600.0), (100, 480, 7200.0)])
    out = tmp_path / "fig.png"
    assert curves.main(["--run", f"A={tmp_path / 'a'}", "--out", str(out), "--target", "472", "--hours", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "A: best held-out 480.0 at generation 100 (2.00 h) of 100; target 472 at generation 100 (2.00 h)"
    assert Image.open(out).size == (1210, 458)  # 11 x 4 in at 110 dpi, plus one legend row below the panels


@pytest.mark.parametrize("arg, message", [
    ("nolabel", "expected LABEL=RUN_DIR[@N][+RUN_DIR[@N]...]"),
    ("A={missing}", "has no eval.csv rows"),
])
def test_bad_runs_are_one_line(tmp_path, capsys, arg, message):
    try:
        rc = curves.main(["--run", arg.format(missing=tmp_path / "none"), "--out", str(tmp_path / "f.png")])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
