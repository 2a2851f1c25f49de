"""``--kinetic``, ``--jacobian`` and ``--steer`` on ``odeflow train cnf|odenet`` (issue 17):
recorded in checkpoints and results, compared on ``--resume``, and an extended regularised
run equal to a fresh longer one (the probes and STEER's end times are drawn per step/epoch)."""
import json
import subprocess
import sys

import numpy as np

from odeflow.experiments.common import load_npz

REG = ["--kinetic", "0.01", "--jacobian", "0.02", "--steer", "0.3"]
CNF = ["train", "cnf", "--task", "ml", "--sizes", "2-4-2", "--batch", "10", "--eval-every", "1",
       "--n-test", "20", "--lr-decay-iters", "3"]
ODENET = ["train", "odenet", "--model", "odenet", "--width", "2", "--batch-size", "512",
          "--milestones", "2", "--tol", "1e-2"]


def _odeflow(argv, out):
    return subprocess.run([sys.executable, "-c", "import sys; from odeflow.cli import main; sys.exit(main(sys.argv[1:]))", *argv, "--out", str(out), "--no-figures",
                           "--no-progress"], capture_output=True, text=True, timeout=300)


def _same(a, b):
    x, y = load_npz(a), load_npz(b)
    assert sorted(x) == sorted(y)
    for name in x:
        if name not in {"history/seconds", "seconds"}:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def test_cnf_flags_recorded_compared_and_extended(tmp_path):
    fresh = _odeflow(CNF + REG + ["--iters", "3"], tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    ml = json.loads((tmp_path / "fresh" / "results.json").read_text())["ml"]
    assert (ml["kinetic"], ml["jacobian"], ml["steer"]) == (0.01, 0.02, 0.3)
    short = _odeflow(CNF + REG + ["--iters", "2"], tmp_path / "run")
    assert short.returncode == 0, short.stderr
    other = _odeflow(CNF + ["--kinetic", "0.5", "--jacobian", "0.02", "--steer", "0.3", "--iters", "3",
                            "--resume"], tmp_path / "run")
    assert other.returncode == 1 and "kinetic" in other.stderr, other.stderr
    resumed = _odeflow(CNF + REG + ["--iters", "3", "--resume"], tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    _same(tmp_path / "fresh" / "ml_checkpoint.npz", tmp_path / "run" / "ml_checkpoint.npz")


def test_odenet_flags_recorded_compared_and_extended(tmp_path):
    fresh = _odeflow(ODENET + REG + ["--epochs", "2"], tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    history = json.loads((tmp_path / "fresh" / "history.json").read_text())
    assert history["regularisation"] == {"kinetic": 0.01, "jacobian": 0.02, "steer": 0.3}
    assert _odeflow(ODENET + REG + ["--epochs", "1"], tmp_path / "run").returncode == 0
    other = _odeflow(ODENET + ["--steer", "0.1", "--epochs", "2", "--resume"], tmp_path / "run")
    assert other.returncode == 1 and "steer" in other.stderr and "kinetic" in other.stderr, other.stderr
    resumed = _odeflow(ODENET + REG + ["--epochs", "2", "--resume"], tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    _same(tmp_path / "fresh" / "checkpoint.npz", tmp_path / "run" / "checkpoint.npz")


def test_bad_regularisation_flags_exit_2_naming_the_flag(tmp_path):
    for argv, flag in [(["train", "odenet", "--steer", "1.0"], "--steer"),
                       (["train", "cnf", "--kinetic", "-1"], "--kinetic"),
                       (["train", "cnf", "--jacobian", "nan"], "--jacobian")]:
        run = _odeflow(argv, tmp_path)
        assert run.returncode == 2 and f"argument {flag}:" in run.stderr, run.stderr
