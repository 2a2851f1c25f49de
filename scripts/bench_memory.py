"""Peak memory of one gradient computation as the number of solver steps grows.

A mildly contracting neural ODE (a slowly decaying rotation plus a small tanh
MLP; dim 2, batch 32) integrated to t1 in {1, 10, 100}, so the number of
dopri5 steps grows about 100x. For each gradient mode, one forward + backward
runs in a fresh Python process under tracemalloc; the peak of traced memory
(Python and NumPy allocations) is reported with the forward step count. One
JSON object per line, then a summary line with the ratio of the largest to the
smallest t1 per mode.

Expected: backsolve flat (the adjoint's O(1) memory), backprop growing with
the steps (every stage is kept for the backward walk), checkpoint growing with
steps x state only (the dense-output record, no graph).

    python scripts/bench_memory.py
"""
from __future__ import annotations

import json
import subprocess
import sys

MODES = ("backsolve", "checkpoint", "backprop")
T1S = (1.0, 10.0, 100.0)

WORKER = r"""
import json, sys, tracemalloc
import numpy as np
import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops

mode, t1 = sys.argv[1], float(sys.argv[2])
A = np.array([[-0.02, -1.0], [1.0, -0.02]])

class Dynamics(nn.Module):
    def __init__(self):
        self.net = nn.MLP((2, 32, 2), activation="tanh", rng=0)
    def forward(self, t, y):
        return y @ A.T + 0.1 * self.net(y)

func = Dynamics()
y0 = Tensor(np.random.default_rng(1).normal(size=(32, 2)))
t = np.array([0.0, t1])
kw = dict(rtol=1e-6, atol=1e-6)
# warm up: imports, first-call compilation and caches are not part of the measurement
ops.sum(odeflow.odeint_adjoint(func, y0, np.array([0.0, 0.1]), **kw)[-1]).backward()
func.zero_grad()
stats = {}
tracemalloc.start()
if mode == "backprop":
    ys = odeflow.odeint_backprop(func, y0, t, stats=stats, **kw)
else:
    ys = odeflow.odeint_adjoint(func, y0, t, adjoint_mode=mode, stats=stats, **kw)
ops.sum(ys[-1] ** 2).backward()
current, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"mode": mode, "t1": t1, "peak_bytes": peak, "forward_steps": stats["forward"]["n_steps"],
                  "forward_nfe": stats["forward"]["nfe"],
                  "backward_nfe": stats.get("backward", {}).get("nfe")}))
"""


def main():
    rows = []
    for mode in MODES:
        for t1 in T1S:
            out = subprocess.run([sys.executable, "-c", WORKER, mode, str(t1)], check=True,
                                 capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        print(json.dumps({"mode": mode, "summary": True,
                          "steps_ratio": mine[-1]["forward_steps"] / mine[0]["forward_steps"],
                          "peak_ratio": mine[-1]["peak_bytes"] / mine[0]["peak_bytes"]}), flush=True)


if __name__ == "__main__":
    main()
