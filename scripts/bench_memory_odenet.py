"""Memory of one gradient step against the number of solver steps: ODE-Net (adjoint) vs RK-Net.

Chen et al. 2018 (§2, Table 1): the adjoint method needs O(1) memory in the
number of solver steps, backpropagating through the solver O(L). Here the ODE
block is solved with fixed RK4 steps of size 1/n (forward, and for the adjoint
also backward), n = 1, 2, 4, ..., so the step count is exactly n; each point is
the tracemalloc peak of one forward + backward pass of the 8x8-digits
classifier (batch of 64, initial weights, float32), each measured in a fresh
Python process (:func:`odeflow.experiments.odenet.step_memory`).

Run: ``PYTHONPATH=src python scripts/bench_memory_odenet.py [--max-steps 32]``.
Prints one JSON line per (model, n) and a final line with the fitted slopes
(bytes per solver step).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from odeflow.experiments.odenet import load_images, step_memory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args(argv)
    data = load_images("digits", dtype=np.float32)
    x, y = data.x_train[:args.batch], data.y_train[:args.batch]
    steps = [2 ** k for k in range(int(np.log2(args.max_steps)) + 1)]
    fits = {}
    for kind in ("odenet", "rknet"):
        peaks = []
        for n in steps:
            t0 = time.perf_counter()
            mem = step_memory(kind, 8, args.width, x, y, dtype=np.float32,
                              block={"method": "rk4", "options": {"step_size": 1.0 / n}})
            peaks.append(mem["peak_bytes"])
            print(json.dumps({"model": kind, "gradient": "adjoint" if kind == "odenet" else "backprop",
                              "solver_steps": n, "peak_mib": round(mem["peak_bytes"] / 2**20, 2),
                              "nfe_forward": mem["nfe_forward"], "nfe_backward": mem["nfe_backward"],
                              "batch": args.batch, "width": args.width,
                              "seconds": round(time.perf_counter() - t0, 2)}), flush=True)
        slope = np.polyfit(steps, peaks, 1)[0]
        fits[kind] = {"mib_per_step": round(slope / 2**20, 3),
                      "peak_mib_first_last": [round(peaks[0] / 2**20, 2), round(peaks[-1] / 2**20, 2)]}
    print(json.dumps({"summary": fits}))


if __name__ == "__main__":
    main()
