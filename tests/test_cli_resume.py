"""Kill, resume, extend: the real ``odeflow train`` commands in fresh processes, at tiny sizes.

A run is SIGKILLed in the middle of writing a checkpoint (just before the rename that
would publish it); ``--resume`` then cleans the temporary file it left and ends with a
final checkpoint equal to that of an uninterrupted run: every array but the wall-clock
timings, bit for bit. The killed run is also shorter than the final one, so the same
comparison proves that an extended run is the fresh longer run (learning-rate schedule
included).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from odeflow.experiments.common import load_npz

# runs odeflow's main() with os.replace patched to SIGKILL this process before the
# KILL_AT-th rename of a checkpoint: the write is cut at its worst moment
KILLER = """
import os, signal, sys
n, calls, real = int(os.environ["KILL_AT"]), [0], os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".npz"):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from odeflow.cli import main
sys.exit(main(sys.argv[1:]))
"""

TIMINGS = {"history/seconds", "seconds"}  # wall-clock times: the only entries allowed to differ

COMMANDS = {
    "odenet": (["train", "odenet", "--model", "resnet", "--width", "4", "--batch-size", "512",
                "--milestones", "2", "--momentum", "0.5"], "--epochs", "checkpoint.npz"),
    "cnf": (["train", "cnf", "--task", "ml", "--sizes", "2-4-2", "--batch", "10", "--eval-every", "1",
             "--n-test", "20", "--lr-decay-iters", "3"], "--iters", "ml_checkpoint.npz"),
    "latent-ode": (["train", "latent-ode", "--models", "latent_ode", "--n-obs", "10", "--n-spirals", "20",
                    "--batch-size", "4", "--hare-lynx-iterations", "0", "--lr-decay-iterations", "3",
                    "--checkpoint-every", "1", "--jobs", "1"], "--iterations", "latent_ode_nobs10.npz"),
}


def _odeflow(argv, out, kill_at=None):
    env = dict(os.environ, KILL_AT=str(kill_at or 0))
    code = KILLER if kill_at else "import sys; from odeflow.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv, "--out", str(out), "--no-figures",
                           "--no-progress"], capture_output=True, text=True, timeout=120, env=env)


def _assert_same_checkpoint(a, b):
    x, y = load_npz(a), load_npz(b)
    assert sorted(x) == sorted(y)
    for name in x:
        if name not in TIMINGS:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_killed_mid_write_then_resumed_and_extended_equals_an_uninterrupted_run(command, tmp_path):
    argv, length, name = COMMANDS[command]
    fresh = _odeflow(argv + [length, "3"], tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    killed = _odeflow(argv + [length, "2"], tmp_path / "run", kill_at=2)  # dies writing step 2
    assert killed.returncode == -9, killed.stderr
    stale = [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    assert stale, "the killed write should have left its temporary file"
    resumed = _odeflow(argv + [length, "3", "--resume"], tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed {stale[0]}" in resumed.stdout
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    _assert_same_checkpoint(tmp_path / "fresh" / name, tmp_path / "run" / name)
