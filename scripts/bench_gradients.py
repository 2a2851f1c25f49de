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

Two more sections (issue 11), on the same problem:

``audit``
    The backsolve audit's cost: forward + gradient by backsolve with the audit
    (the default) and without it (the drift computation replaced by a
    function returning 0, so nothing is compared), interleaved call by call;
    with the backward evaluation counts of both and the drifts measured; and
    the comparison itself timed alone per gradient (``audit_compare_s``), since
    the interleaved difference is below the machine's noise. Also
    the adjoint's forward alone (each evaluation recorded to find the
    parameters) against the plain forward solve.
``hvp``
    A Hessian-vector product ``d/dtheta <dL/dtheta, v>`` through each mode
    (two walks, the first with ``create_graph=True``), against backprop,
    interleaved.

``dissipative``
    No timing: the example of docs/adjoint.md §6 (y1' = -20 y1 feeding
    y2' = -y2/2 + theta tanh(y1), L = y2(2), rtol 1e-6, atol 1e-8): dL/dtheta
    and the backward statistics of backsolve with each ``on_drift`` policy
    that returns, of checkpoint and of backprop.

``drifts``
    No timing: the audit's drift on well-conditioned neural ODEs (tanh MLPs
    2 -> 64 -> 64 -> 2, three seeds, batch 64, t1 in {1, 10, 30}, rtol = atol
    in {1e-3, 1e-5, 1e-8}), the evidence for the default ``drift_tol``.

    python scripts/bench_gradients.py [--repeats 11] [--sections peers,audit,hvp,dissipative,drifts]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import odeflow
import odeflow.adjoint.adjoint as adjoint_module
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
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


def audit_rows(y0v, weights, repeats):
    """JSON rows of the ``audit`` section (module docstring)."""
    func = Dynamics(np.random.default_rng(0))
    t = np.array([0.0, 1.0])
    real_drift = adjoint_module.drift
    stats = {}

    def gradient(audited):
        func.zero_grad()
        adjoint_module.drift = real_drift if audited else (lambda *args: 0.0)
        try:
            ys = odeflow.odeint_adjoint(func, Tensor(y0v), t, rtol=RTOL, atol=ATOL, stats=stats)
            ops.sum(ys[-1] * weights).backward()
        finally:
            adjoint_module.drift = real_drift
        return dict(stats["backward"])

    def adjoint_forward():
        return odeflow.odeint_adjoint(func, Tensor(y0v), t, rtol=RTOL, atol=ATOL)

    def plain_forward():
        with odeflow.no_grad():
            return odeflow.odeint(func, y0v, t, rtol=RTOL, atol=ATOL)
    med = interleaved_medians({"audit": lambda: gradient(True), "no_audit": lambda: gradient(False),
                               "adjoint_forward": adjoint_forward, "plain_forward": plain_forward},
                              repeats)
    with_audit, without = gradient(True), gradient(False)
    # the comparison itself, timed alone (the interleaved difference is within the noise):
    # one drift() per interval on arrays of the state's size
    y_a, y_b = y0v.ravel(), y0v.ravel() + 1e-9
    tol = np.full(y_a.size, RTOL)
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        real_drift(y_a, y_b, tol, tol)
    compare_s = (time.perf_counter() - start) / calls * (t.size - 1)
    yield {"section": "audit", "mode": "backsolve", "forward_gradient_audit_s": med["audit"],
           "forward_gradient_no_audit_s": med["no_audit"],
           "audit_overhead": med["audit"] / med["no_audit"] - 1.0,
           "audit_compare_s": compare_s, "audit_compare_fraction": compare_s / med["audit"],
           "nfe_backward_audit": with_audit["nfe"], "nfe_backward_no_audit": without["nfe"],
           "drift": with_audit["drift"], "recomputed": with_audit["recomputed"]}
    yield {"section": "audit", "mode": "forward", "adjoint_forward_recorded_s": med["adjoint_forward"],
           "plain_forward_s": med["plain_forward"],
           "recording_overhead": med["adjoint_forward"] / med["plain_forward"] - 1.0}


def hvp_rows(y0v, weights, repeats):
    """JSON rows of the ``hvp`` section (module docstring)."""
    func = Dynamics(np.random.default_rng(0))
    params = func.parameters()
    v = [np.random.default_rng(k).normal(size=p.shape) for k, p in enumerate(params)]
    t = np.array([0.0, 1.0])
    results = {}

    def hvp(mode):
        y0 = Tensor(y0v)
        if mode == "backprop":
            ys = odeflow.odeint(func, y0, t, rtol=RTOL, atol=ATOL)
        else:
            ys = odeflow.odeint_adjoint(func, y0, t, rtol=RTOL, atol=ATOL, adjoint_mode=mode)
        g = gradients(ops.sum(ys[-1] * weights), params, create_graph=True)
        h = gradients(sum(ops.sum(gi * vi) for gi, vi in zip(g, v)), params)
        results[mode] = np.concatenate([x.data.ravel() for x in h])
    modes = ("backprop", "backsolve", "checkpoint")
    med = interleaved_medians({m: (lambda m=m: hvp(m)) for m in modes}, repeats)
    ref = results["backprop"]
    for m in modes:
        yield {"section": "hvp", "mode": m, "hvp_s": med[m], "over_backprop": med[m] / med["backprop"],
               "rel_diff_from_backprop": float(np.abs(results[m] - ref).max() / np.abs(ref).max())}


def dissipative_rows():
    """JSON rows of the ``dissipative`` section (module docstring)."""
    theta = nn.Parameter(np.array([0.7]))

    def func(t, y):
        y1, y2 = y[..., 0:1], y[..., 1:2]
        return ops.concatenate([-20.0 * y1, -0.5 * y2 + theta * ops.tanh(y1)], axis=-1)
    runs = [("backsolve", {"on_drift": p}) for p in ("recompute", "ignore")] + [("checkpoint", None),
                                                                               ("backprop", None)]
    for mode, options in runs:
        theta.grad, stats = None, {}
        y0 = Tensor(np.array([1.0, 0.0]))
        if mode == "backprop":
            ys = odeflow.odeint(func, y0, [0.0, 2.0], rtol=1e-6, atol=1e-8)
        else:
            ys = odeflow.odeint_adjoint(func, y0, [0.0, 2.0], rtol=1e-6, atol=1e-8, adjoint_mode=mode,
                                        adjoint_options=options, stats=stats)
        ys[-1, 1].backward()
        yield {"section": "dissipative", "mode": mode, "adjoint_options": options,
               "dL_dtheta": float(theta.grad.data[0]), "backward": stats.get("backward")}


def drift_rows():
    """JSON rows of the ``drifts`` section (module docstring)."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        net = nn.MLP(SIZES, activation="tanh", rng=rng)
        y0v = rng.normal(size=(64, 2))
        for t1 in (1.0, 10.0, 30.0):
            for tol in (1e-3, 1e-5, 1e-8):
                stats = {}
                ys = odeflow.odeint_adjoint(lambda t, y: net(y), Tensor(y0v), [0.0, t1], rtol=tol, atol=tol,
                                            stats=stats)
                ops.sum(ys ** 2).backward()
                yield {"section": "drifts", "seed": seed, "t1": t1, "tol": tol,
                       "drift": stats["backward"]["drift"], "recomputed": stats["backward"]["recomputed"],
                       "forward_steps": stats["forward"]["n_steps"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--sections", default="peers,audit,hvp,dissipative,drifts",
                        help="comma-separated: peers (the modes and torchdiffeq), audit, hvp, dissipative, "
                             "drifts")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    rng = np.random.default_rng(1)
    y0v = rng.normal(size=(BATCH, 2))
    weights = rng.normal(size=(BATCH, 2))
    if "audit" in sections:
        for row in audit_rows(y0v, weights, args.repeats):
            print(json.dumps(row), flush=True)
    if "hvp" in sections:
        for row in hvp_rows(y0v, weights, args.repeats):
            print(json.dumps(row), flush=True)
    if "dissipative" in sections:
        for row in dissipative_rows():
            print(json.dumps(row), flush=True)
    if "drifts" in sections:
        rows = list(drift_rows())
        for row in rows:
            print(json.dumps(row), flush=True)
        print(json.dumps({"section": "drifts", "max_drift": max(max(r["drift"]) for r in rows),
                          "min_drift": min(min(r["drift"]) for r in rows),
                          "recomputed": sum(r["recomputed"] for r in rows)}), flush=True)
    if "peers" not in sections:
        return
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
