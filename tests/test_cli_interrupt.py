"""Interrupts: SIGINT/SIGTERM end ``odeflow train`` within seconds, workers included, with one
line saying where the last checkpoint is and how to resume; Ctrl-C inside a compiled solve is a
KeyboardInterrupt, not a SystemError."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

LONG_LATENT = ["train", "latent-ode", "--models", "latent_ode", "--n-obs", "10", "20", "--n-spirals", "40",
               "--batch-size", "8", "--iterations", "100000", "--hare-lynx-iterations", "0", "--jobs", "2",
               "--checkpoint-every", "5", "--no-figures", "--no-progress"]


def _children(pid):
    """Pids of the processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# the parent alone (`timeout -s INT`, `kill`): the case that hung; Ctrl-C in a terminal signals the
# whole group, which the workers ignore (the parent ends them), so it ends the same way
@pytest.mark.parametrize("whom, signum", [("parent", signal.SIGINT), ("parent", signal.SIGTERM)])
def test_interrupt_during_parallel_latent_ode_ends_within_10_s_and_leaves_no_process(tmp_path, whom,
                                                                                     signum):
    proc = subprocess.Popen([sys.executable, "-m", "odeflow.cli", *LONG_LATENT, "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.npz"))) < 2:  # both workers are training
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) >= 2
        if whom == "parent":  # `timeout -s INT`, `kill`
            os.kill(proc.pid, signum)
        else:  # Ctrl-C in a terminal: the whole foreground group
            os.killpg(proc.pid, signum)
        start = time.monotonic()
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"odeflow: interrupted by {signal.Signals(signum).name}; last checkpoint ")
    assert "--resume" in last and "Traceback" not in err
    time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]


def test_ctrl_c_inside_a_compiled_solve_is_a_keyboard_interrupt():
    code = textwrap.dedent("""
        import os, signal, threading, time
        import numba, numpy as np
        import odeflow
        @numba.njit
        def f(t, y):
            return np.array([y[1], -1e4 * y[0]])
        y0 = np.array([1.0, 0.0])
        odeflow.odeint(f, y0, np.array([0.0, 0.01]))  # compile first
        start = time.perf_counter()
        odeflow.odeint(f, y0, np.array([0.0, 10.0]), rtol=1e-10, atol=1e-10)
        span = 10.0 * 1.5 / (time.perf_counter() - start)  # about 1.5 s of solving
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            odeflow.odeint(f, y0, np.array([0.0, span]), rtol=1e-10, atol=1e-10,
                           options={"max_steps": 10**9})
            print("finished")
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "KeyboardInterrupt", proc.stderr[-2000:]
