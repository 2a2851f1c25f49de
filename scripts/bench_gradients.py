"""Forward and forward+gradient cost of a neural ODE, per gradient mode, against torchdiffeq and diffrax.

The problem (scripts/gradient_peers.py): MLP dynamics 2 -> 64 -> 64 -> 2
(tanh), batch 256, t in [0, 1], dopri5 at rtol = atol = 1e-5, float64 on the
CPU, the same weights in every library. Sections:

``peers``
    Median wall time of the forward solve alone and of forward + gradient in
    each mode: odeflow's backprop / backsolve / checkpoint, torchdiffeq's
    ``odeint`` / ``odeint_adjoint``, diffrax's (jitted)
    ``RecursiveCheckpointAdjoint`` / ``BacksolveAdjoint``; every job
    interleaved call by call with the others (experiments.common.interleaved_medians),
    so all see the same machine load; with each one's evaluation or step counts
    and the ratios peer / odeflow, of wall time and of the process's CPU time
    (``*_cpu_s``: on a loaded machine the wall time includes waiting for a core;
    CPU time counts every thread, so it compares like with like only at one thread).
``scaling``
    The same at batch 1024 and 4096, width 128 and 256, state 8 and 32 (one
    factor changed at a time from the base size).
``threads``
    odeflow alone in the process's default BLAS setting (odeflow.blas limits
    threads inside its solves and walks), under a one-thread limit around
    each call, and with odeflow's limit switched off: run it with
    ``--threads default``.

``--threads one`` (the default) limits every library to one thread (BLAS by
threadpoolctl, ``torch.set_num_threads(1)``, XLA's Eigen pool off);
``--threads default`` leaves each library its default.

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

    python scripts/bench_gradients.py [--repeats 11] [--threads one|default]
        [--sections peers,scaling,threads,audit,hvp,dissipative,drifts]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import odeflow
import gradient_peers
import odeflow.adjoint.adjoint as adjoint_module
from odeflow import Tensor, blas, nn
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


def peer_rows(problem, repeats, threads):
    """JSON rows of the ``peers`` section for one problem size (module docstring)."""
    libs = {"odeflow": (gradient_peers.odeflow_jobs(problem), "odeflow")}
    for name, make in (("torchdiffeq", gradient_peers.torch_jobs), ("diffrax", gradient_peers.diffrax_jobs)):
        jobs, label = make(problem)
        if jobs:
            libs[name] = (jobs, label)
    timed = {f"{lib}/{mode}": job for lib, (jobs, _) in libs.items() for mode, (job, _) in jobs.items()}
    cpu = {name: [] for name in timed}

    def with_cpu(name, job):  # the process's CPU time too: on a loaded machine wall time waits
        def run():
            start = time.process_time()
            job()
            cpu[name].append(time.process_time() - start)
        return run
    med = interleaved_medians({name: with_cpu(name, job) for name, job in timed.items()}, repeats)
    cpu_med = {name: float(np.median(v[1:])) for name, v in cpu.items()}  # [0]: the warm-up call
    for mode in ("forward", "backprop", "backsolve", "checkpoint"):
        row = {"section": "peers", **problem.label(), "mode": mode, "threads": threads}
        ours = med[f"odeflow/{mode}"]
        row["odeflow_s"] = ours
        row["odeflow_cpu_s"] = cpu_med[f"odeflow/{mode}"]
        row["counts"] = {"odeflow": libs["odeflow"][0][mode][1]()}
        for lib in ("torchdiffeq", "diffrax"):
            if lib in libs and mode in libs[lib][0]:
                row[f"{lib}_s"] = med[f"{lib}/{mode}"]
                row[f"{lib}_over_odeflow"] = med[f"{lib}/{mode}"] / ours
                row[f"{lib}_cpu_s"] = cpu_med[f"{lib}/{mode}"]
                row[f"{lib}_over_odeflow_cpu"] = cpu_med[f"{lib}/{mode}"] / row["odeflow_cpu_s"]
                row["counts"][lib] = libs[lib][0][mode][1]()
        row["peers"] = {lib: label for lib, (_, label) in libs.items() if lib != "odeflow"}
        yield row


def thread_rows(problem, repeats):
    """JSON rows of the ``threads`` section (module docstring): odeflow in the process's own
    BLAS setting (odeflow.blas limits inside), under a one-thread limit set around each call,
    and with odeflow's limit switched off (``blas.set_threads(None)``)."""
    from threadpoolctl import ThreadpoolController
    one = ThreadpoolController().select(user_api="blas")
    jobs = gradient_peers.odeflow_jobs(problem)
    timed = {}
    for mode in ("forward", "backprop", "backsolve"):
        job = jobs[mode][0]

        def one_thread(job=job):
            with one.limit(limits=1):
                job()

        def unlimited(job=job):
            blas.set_threads(None)
            try:
                job()
            finally:
                blas.set_threads(1)
        timed.update({f"{mode}/default": job, f"{mode}/one_thread": one_thread, f"{mode}/unlimited": unlimited})
    med = interleaved_medians(timed, repeats)
    info = [(d["internal_api"], d["num_threads"]) for d in one.info()]
    for mode in ("forward", "backprop", "backsolve"):
        default, single, free = (med[f"{mode}/{k}"] for k in ("default", "one_thread", "unlimited"))
        yield {"section": "threads", **problem.label(), "mode": mode, "default_s": default,
               "one_thread_s": single, "unlimited_s": free, "default_over_one_thread": default / single,
               "unlimited_over_one_thread": free / single, "blas": info}


SCALING = ([(b, 64, 2) for b in (1024, 4096)] + [(256, w, 2) for w in (128, 256)]
           + [(256, 64, s) for s in (8, 32)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--scaling-repeats", type=int, default=5)
    parser.add_argument("--threads", choices=("one", "default"), default="one",
                        help="one: every library at one thread (BLAS, torch, XLA); default: each "
                             "library's own default (then the threads section compares odeflow's)")
    parser.add_argument("--sections", default="peers,audit,hvp,dissipative,drifts",
                        help="comma-separated: peers (the base size, every library), scaling (the "
                             "scaling table), threads, audit, hvp, dissipative, drifts")
    args = parser.parse_args()
    if args.threads == "one":  # before jax and torch are imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
        try:
            import torch
            torch.set_num_threads(1)
        except ImportError:
            pass
    print(json.dumps({"section": "run", "threads": args.threads, "load_average_1_5_15_min": os.getloadavg(),
                      "cpus": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}),
          flush=True)
    sections = set(args.sections.split(","))
    rng = np.random.default_rng(1)
    y0v = rng.normal(size=(BATCH, 2))
    weights = rng.normal(size=(BATCH, 2))
    if "peers" in sections:
        for row in peer_rows(gradient_peers.Problem(), args.repeats, args.threads):
            print(json.dumps(row), flush=True)
    if "threads" in sections:
        for row in thread_rows(gradient_peers.Problem(), args.repeats):
            print(json.dumps(row), flush=True)
    if "scaling" in sections:
        for batch, width, state in SCALING:
            for row in peer_rows(gradient_peers.Problem(batch, width, state), args.scaling_repeats, args.threads):
                print(json.dumps(row), flush=True)
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
    print(json.dumps({"section": "run", "load_average_at_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
