"""Forward and forward+gradient cost of a neural ODE, per gradient mode, against torchdiffeq.

MLP dynamics 2 -> 64 -> 64 -> 2 (tanh), batch 256, t in [0, 1], dopri5 at
rtol = atol = 1e-5, float64 on the CPU. For each of odeflow's modes
(backprop through the solver, adjoint backsolve, adjoint checkpoint) and, when
installed, torchdiffeq's ``odeint`` and ``odeint_adjoint``: median wall time of
the forward solve alone and of forward + gradient, with the forward and
backward evaluation counts. One JSON object per line; ratios are taken against
torchdiffeq's same mode, timed in the same run, interleaved call by call with
odeflow's (so both see the same machine load). Pin BLAS to one thread for both
(``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``).

    python scripts/bench_gradients.py [--repeats 11]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.experiments.common import interleaved_medians

RTOL = ATOL = 1e-5
SIZES = (2, 64, 64, 2)
BATCH = 256


class Dynamics(nn.Module):
    def __init__(self, rng):
        self.net = nn.MLP(SIZES, activation="tanh", rng=rng)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y)


def counts(func, forward, gradient):
    """Evaluation counts (``func.nfe``) of one forward and of one forward+gradient."""
    func.nfe = 0
    forward()
    nfe_forward = func.nfe
    func.nfe = 0
    gradient()
    return {"nfe_forward": nfe_forward, "nfe_forward_gradient": func.nfe}


def odeflow_jobs(y0v, weights):
    """``{mode: (func, forward, gradient)}`` for odeflow's three modes."""
    func = Dynamics(np.random.default_rng(0))
    t = np.array([0.0, 1.0])
    jobs = {}
    for mode in ("backprop", "backsolve", "checkpoint"):
        def forward():
            with odeflow.no_grad():
                return odeflow.odeint(func, y0v, t, rtol=RTOL, atol=ATOL)

        def gradient(mode=mode):
            func.zero_grad()
            y0 = Tensor(y0v)
            if mode == "backprop":
                ys = odeflow.odeint(func, y0, t, rtol=RTOL, atol=ATOL)
            else:
                ys = odeflow.odeint_adjoint(func, y0, t, rtol=RTOL, atol=ATOL, adjoint_mode=mode)
            ops.sum(ys[-1] * weights).backward()
        jobs[mode] = (func, forward, gradient)
    return jobs


def torch_jobs(y0v, weights):
    """``{mode: (func, forward, gradient)}`` for torchdiffeq's two modes, and a peer label."""
    try:
        import torch
        import torchdiffeq
    except ImportError:
        return {}, None
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                           torch.nn.Tanh(), torch.nn.Linear(64, 2))
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return self.net(y)
    func = F()
    y0 = torch.tensor(y0v)
    w = torch.tensor(weights)
    t = torch.tensor([0.0, 1.0])
    jobs = {}
    for name, solver in (("backprop", torchdiffeq.odeint), ("backsolve", torchdiffeq.odeint_adjoint)):
        def forward(solver=solver):
            with torch.no_grad():
                return solver(func, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")

        def gradient(solver=solver):
            func.zero_grad()
            ys = solver(func, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")
            (ys[-1] * w).sum().backward()
        jobs[name] = (func, forward, gradient)
    label = (f"torchdiffeq {torchdiffeq.__version__} (torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads)")
    return jobs, label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    y0v = rng.normal(size=(BATCH, 2))
    weights = rng.normal(size=(BATCH, 2))
    ours = odeflow_jobs(y0v, weights)
    peers, label = torch_jobs(y0v, weights)
    for mode, (func, forward, gradient) in ours.items():
        jobs = {"forward": forward, "gradient": gradient}
        if mode in peers:
            jobs.update(peer_forward=peers[mode][1], peer_gradient=peers[mode][2])
        med = interleaved_medians(jobs, args.repeats)
        out = {"library": "odeflow", "mode": mode, "forward_s": med["forward"],
               "forward_gradient_s": med["gradient"], **counts(func, forward, gradient)}
        if mode in peers:
            peer = {"library": "torchdiffeq", "mode": mode, "forward_s": med["peer_forward"],
                    "forward_gradient_s": med["peer_gradient"], **counts(*peers[mode]), "peer": label}
            out["torchdiffeq_over_odeflow_forward"] = peer["forward_s"] / out["forward_s"]
            out["torchdiffeq_over_odeflow_forward_gradient"] = (peer["forward_gradient_s"]
                                                                / out["forward_gradient_s"])
            print(json.dumps(out), flush=True)
            print(json.dumps(peer), flush=True)
        else:
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
