"""Benchmark: an ensemble of Lorenz solves (one member per rho), serial vs parallel vs peers.

Prints JSON lines:

* ``serial_compiled``: ``solve_ensemble(..., workers=1)``, the compiled chunk runner on one thread
  (the serial compiled loop over members);
* ``ensemble_threads``: ``solve_ensemble(..., workers=W)`` (default W = 2), the same runner on W
  threads with the GIL released; with ``speedup`` over ``serial_compiled``
  (medians of interleaved rounds, :func:`odeflow.experiments.common.interleaved_medians`);
  ``cpu_per_wall`` (process CPU seconds over wall seconds of one call) shows how many cores the
  process actually got: near 2 on an idle 2-core machine with W = 2, far less under contention;
* ``scipy_loop``: a Python loop over ``scipy.integrate.solve_ivp`` (RK45, same rtol/atol, t_eval)
  on the first ``--scipy-members`` members, timed once and extrapolated linearly to all members
  (``extrapolated: true``), with the ratio to ``ensemble_threads``;
* ``diffrax_vmap``: the same members by diffrax (Dopri5, PID controller, ``jax.vmap``, jitted,
  float64, CPU; compile excluded) when importable, with ``threads_over_diffrax``;
* ``dask``: ``solve_ensemble(..., client=)`` on a ``LocalCluster`` of 2 worker processes
  (1 thread each) on this machine, after one warm-up call (the workers' compile): median time,
  its overhead over ``ensemble_threads``, and whether the results are identical;
* ``gil_check``: Python iterations this thread makes while another thread runs one long runner
  call, over its iterations in the same time alone (about 0 if the GIL were held; near 1, or the
  CPU share left to it, when released);
* ``load``: the load average before and after (the machine is shared).

Usage: ``PYTHONPATH=src python scripts/bench_ensemble.py [--members 10000] [--repeats 5]``
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numba
import numpy as np

import odeflow
from odeflow.experiments.common import interleaved_medians

RTOL, ATOL = 1e-6, 1e-9


@numba.njit
def lorenz(t, y, rho):
    """Lorenz (1963) with sigma = 10, beta = 8/3 and the member's rho."""
    out = np.empty(3)
    out[0] = 10.0 * (y[1] - y[0])
    out[1] = y[0] * (rho - y[2]) - y[1]
    out[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]
    return out


def diffrax_vmap(rho, y0s, t, y_ref, repeats):
    """The same ensemble with diffrax: Dopri5, PID controller at the same rtol/atol, ``jax.vmap`` over
    the members, jitted (compile excluded), float64, on the CPU. Raises ImportError without diffrax."""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import diffrax
    import jax.numpy as jnp

    def f(s, y, r):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - 8.0 / 3.0 * y[2]])

    term = diffrax.ODETerm(f)
    solver = diffrax.Dopri5()
    control = diffrax.PIDController(rtol=RTOL, atol=ATOL)
    saveat = diffrax.SaveAt(ts=jnp.asarray(t))

    def one(y0, r):
        return diffrax.diffeqsolve(term, solver, t[0], t[-1], None, y0, args=r, saveat=saveat,
                                   stepsize_controller=control, max_steps=100_000).ys
    run = jax.jit(jax.vmap(one))
    y0j, rj = jnp.asarray(y0s), jnp.asarray(rho)
    tick = time.perf_counter()
    ys = run(y0j, rj).block_until_ready()
    compile_seconds = time.perf_counter() - tick
    med = interleaved_medians({"diffrax": lambda: run(y0j, rj).block_until_ready()}, repeats)
    return dict(name="diffrax_vmap", members=len(rho), seconds=med["diffrax"], first_call_seconds=compile_seconds,
                max_difference_to_odeflow=float(np.abs(np.asarray(ys) - y_ref).max()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scipy-members", type=int, default=200)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(dict(load_average=os.getloadavg(), cpus=os.cpu_count(),
                          affinity=len(os.sched_getaffinity(0)))))
    M = args.members
    rho = np.linspace(10.0, 40.0, M)
    y0s = np.tile([1.0, 1.0, 1.0], (M, 1))
    t = np.linspace(0.0, 2.0, 11)
    common = dict(args=(rho,), rtol=RTOL, atol=ATOL)

    first = odeflow.solve_ensemble(lorenz, y0s[:2], t, workers=1, args=(rho[:2],), rtol=RTOL, atol=ATOL)
    print(json.dumps(dict(name="compile", seconds=first.stats["compile_seconds"])))
    serial = lambda: odeflow.solve_ensemble(lorenz, y0s, t, workers=1, **common)  # noqa: E731
    threads = lambda: odeflow.solve_ensemble(lorenz, y0s, t, workers=args.workers, **common)  # noqa: E731
    ref = serial()
    assert ref.success.all()
    med = interleaved_medians({"serial": serial, "threads": threads}, args.repeats)
    cpu = {}
    for name, fn in (("serial", serial), ("threads", threads)):  # CPU share this process got
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu[name] = (time.process_time() - c0, time.perf_counter() - w0)
    same = bool(np.array_equal(threads().y, ref.y))
    evals = int(ref.stats["nfe"].sum())
    print(json.dumps(dict(name="serial_compiled", members=M, seconds=med["serial"], total_nfe=evals,
                          us_per_member=1e6 * med["serial"] / M, cpu_seconds_one_call=cpu["serial"][0],
                          cpu_per_wall=cpu["serial"][0] / cpu["serial"][1])))
    print(json.dumps(dict(name="ensemble_threads", members=M, workers=args.workers, seconds=med["threads"],
                          speedup=med["serial"] / med["threads"], identical_to_serial=same,
                          cpu_seconds_one_call=cpu["threads"][0], cpu_per_wall=cpu["threads"][0] / cpu["threads"][1])))

    # does the compiled runner release the GIL? Python work in this thread during one long
    # runner call (one chunk, another thread), as a share of its rate alone: ~0 if the GIL is held
    def spin(stop):
        count = 0
        while not stop():
            count += 1
        return count
    one_chunk = lambda: odeflow.solve_ensemble(lorenz, y0s, t, workers=1, chunk_size=M, **common)  # noqa: E731
    worker = threading.Thread(target=one_chunk)
    start = time.perf_counter()
    worker.start()
    during = spin(lambda: not worker.is_alive())
    busy = time.perf_counter() - start
    until = time.perf_counter() + busy
    alone = spin(lambda: time.perf_counter() > until)
    print(json.dumps(dict(name="gil_check", seconds=busy, python_progress_during_runner_over_alone=during / alone)))

    from scipy.integrate import solve_ivp
    k = min(args.scipy_members, M)
    py = lorenz.py_func
    start = time.perf_counter()
    errs = []
    for i in range(k):
        sol = solve_ivp(py, (t[0], t[-1]), y0s[i], method="RK45", t_eval=t, args=(rho[i],), rtol=RTOL, atol=ATOL)
        errs.append(np.abs(sol.y.T - ref.y[i]).max())
    seconds = (time.perf_counter() - start) * M / k
    print(json.dumps(dict(name="scipy_loop", members=M, timed_members=k, extrapolated=k < M, seconds=seconds,
                          ratio_to_ensemble_threads=seconds / med["threads"],
                          max_difference_to_odeflow=float(max(errs)))))
    try:
        row = diffrax_vmap(rho, y0s, t, ref.y, args.repeats)
    except ImportError:
        row = dict(name="diffrax_vmap", skipped="diffrax not installed")
    if "seconds" in row:
        row["threads_over_diffrax"] = med["threads"] / row["seconds"]  # the same members, both warm
    print(json.dumps(row))

    if not args.no_dask:
        from distributed import Client, LocalCluster
        start = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            started = time.perf_counter() - start
            run = lambda: odeflow.solve_ensemble(lorenz, y0s, t, client=client, **common)  # noqa: E731
            tick = time.perf_counter()
            warm = run()  # the workers compile here
            warm_seconds = time.perf_counter() - tick
            med_d = interleaved_medians({"dask": run, "threads": threads}, args.repeats)
            print(json.dumps(dict(name="dask", members=M, workers=2, cluster_start_seconds=started,
                                  first_call_seconds=warm_seconds, seconds=med_d["dask"],
                                  threads_seconds_same_rounds=med_d["threads"],
                                  overhead_seconds=med_d["dask"] - med_d["threads"],
                                  ratio_to_threads=med_d["dask"] / med_d["threads"],
                                  identical_to_local=bool(np.array_equal(warm.y, ref.y)))))
    print(json.dumps(dict(name="load", load_average_end=os.getloadavg())))


if __name__ == "__main__":
    main()
