"""Every numeric option of every entry point is checked against its meaningful range before any work: a value
out of it is one line, ``error: PROG: argument --X: must be ...``, and exit 2 (issue 38)."""

from __future__ import annotations

import argparse
import math

import pytest

from pinn_jax import errors, train
from pinn_jax.models import pretrained
from pinn_jax.study import across_envs, curves, diagnose, evaluate
from pinn_jax.tools import bench, demo, distill, pycma_reference

NO_MODEL = "pretrained:no_such_model"  # were an option checked after the models are loaded, this would be the error
SEED_RANGE = "must be an integer from 0 to 4294967295 (a seed is a uint32)"

CASES = [  # (main, argv, the option refused, what its error says); every other argument would be accepted
    *[(m, [*args, "--seed", seed], "--seed", SEED_RANGE)
      for m, args in [(evaluate.main, [NO_MODEL]), (diagnose.main, [NO_MODEL]), (across_envs.main, [NO_MODEL]),
                      (train.main, ["--config", "quick"]), (distill.main, ["--config", "quick", "--out", "o"]),
                      (bench.main, ["--tiny"]), (demo.main, ["o"]),
                      (pycma_reference.main, ["--config", "quick", "--generations", "1", "--out", "o"])]
      for seed in ("-1", str(2**32), "1.5")],
    (evaluate.main, [NO_MODEL, "--fps", "0"], "--fps", "must be a finite number > 0, got '0'"),
    (evaluate.main, [NO_MODEL, "--fps", "nan"], "--fps", "must be a finite number > 0, got 'nan'"),
    (evaluate.main, [NO_MODEL, "--noise-std", "inf"], "--noise-std", "must be a finite number > 0, got 'inf'"),
    (evaluate.main, [NO_MODEL, "--episodes", "0"], "--episodes", "must be an integer from 1 to 2147483647"),
    (evaluate.main, [NO_MODEL, "--max-steps", str(2**31)], "--max-steps", "must be an integer from 1 to 2147483647"),
    (evaluate.main, [NO_MODEL, "--shuffle-every", "50", "0"], "--shuffle-every", "must be an integer from 1"),
    (evaluate.main, [NO_MODEL, "--noise", "5", "-1"], "--noise", "must be an integer from 0"),
    (evaluate.main, [NO_MODEL, "--video-stride", "0"], "--video-stride", "must be an integer from 1"),
    (evaluate.main, [NO_MODEL, "--video-steps", "-3"], "--video-steps", "must be an integer from 1"),
    (evaluate.main, [NO_MODEL, "--episode-index", "-1"], "--episode-index", "must be an integer from 0"),
    (diagnose.main, [NO_MODEL, "--upright-cos", "nan"], "--upright-cos", "must be a number from -1 to 1, got 'nan'"),
    (diagnose.main, [NO_MODEL, "--upright-cos", "1.5"], "--upright-cos", "must be a number from -1 to 1, got '1.5'"),
    (diagnose.main, [NO_MODEL, "--max-steps", "1"], "--max-steps", "must be an integer from 2"),
    (across_envs.main, [NO_MODEL, "--episodes", "1"], "--episodes",
     "must be an integer from 2 to 2147483647 (a standard error needs two)"),
    (curves.main, ["--run", "a=no_dir", "--out", "c.png", "--target", "nan"], "--target", "must be a finite number"),
    (curves.main, ["--run", "a=no_dir", "--out", "c.png", "--hours", "0"], "--hours", "must be a finite number > 0"),
    (curves.main, ["--run", "a=no_dir", "--out", "c.png", "--hours", "inf"], "--hours", "must be a finite number > 0"),
    (bench.main, ["--tiny", "--curve-steps", "0"], "--curve-steps", "must be an integer from 1"),
    (bench.main, ["--tiny", "--repeats", "0"], "--repeats", "must be an integer from 1"),
    (bench.main, ["--tiny", "--grid-population", "8,1"], "--grid-population", "must be an integer from 2"),
    (bench.main, ["--tiny", "--grid-rollouts", "1.5"], "--grid-rollouts", "must be an integer from 1"),
    (bench.main, ["--tiny", "--grid-features", "4"], "--grid-features",
     "must be an integer from 5 to 2147483647 (the environment's"),
    (demo.main, ["o", "--port", "65536"], "--port", "must be an integer from 0 to 65535 (a TCP port)"),
    (pycma_reference.main, ["--config", "quick", "--generations", "0", "--out", "o"], "--generations",
     "must be an integer from 1"),
    (pretrained.main, ["export-student", "no_dir", "x", "--round", "-1"], "--round", "must be an integer from 0"),
]


@pytest.mark.parametrize("main, argv, option, says", CASES,
                         ids=[f"{m.__module__.rsplit('.', 1)[-1]} {' '.join(a[-2:])}" for m, a, *_ in CASES])
def test_a_number_out_of_range_is_one_line_before_any_work(main, argv, option, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and f"argument {option}: {says}" in err, err
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_range_helpers_take_their_bounds_and_refuse_the_rest():
    assert errors.uint32("0") == 0 and errors.uint32(str(2**32 - 1)) == 2**32 - 1
    assert errors.positive_int(str(2**31 - 1)) == 2**31 - 1 and errors.nonneg_int("0") == 0
    assert errors.float_range(-1.0, 1.0)("-1") == -1.0 and errors.positive_float("1e-300") == 1e-300
    assert errors.finite_float("-1e300") == -1e300
    for parse, text in [(errors.uint32, "-1"), (errors.uint32, str(2**32)), (errors.uint32, "1e3"),
                        (errors.positive_int, "0"), (errors.positive_int, str(2**31)), (errors.nonneg_int, "-1"),
                        (errors.nonneg_int, ""), (errors.positive_float, "0"), (errors.positive_float, "-inf"),
                        (errors.finite_float, "nan"), (errors.finite_float, "1e999"), (errors.finite_float, "x"),
                        (errors.float_range(-1.0, 1.0), "1.0000001")]:
        with pytest.raises(argparse.ArgumentTypeError, match=f"^must be .*, got {text!r}$"):
            parse(text)
    assert math.isfinite(errors.float_range(0.0, 1.0, above=True)("1"))
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number > 0 and <= 1, got '0'"):
        errors.float_range(0.0, 1.0, above=True)("0")


def test_the_episode_shown_is_one_of_those_evaluated(capsys):
    assert evaluate.main([NO_MODEL, "--episodes", "4", "--episode-index", "4"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --episode-index 4 is not one of the 4 episodes evaluated "
                                                "(0 to 3)")
