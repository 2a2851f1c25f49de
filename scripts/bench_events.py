"""Benchmark event location: odeflow with and without an event, jitted and Python func,
against scipy's ``solve_ivp(events=...)`` with the same event, in one interleaved run.

Event sampling: the default ``options["event_samples"] = 4`` (sign changes looked
for in four sub-intervals per step: several roots per step found) and 1 (step
ends only, as scipy).

Problem: the harmonic oscillator y = (cos t, -sin t) on [0, t1] with the event
g = y[0] (every zero of cos t, about t1 / pi of them), dopri5 / RK45 at the
same tolerances. Prints one JSON object per line: the contender, median wall
time (s), nfe, number of events found and the max error of the event times
against the closed form pi/2 + k pi; then a summary line with the ratios the
issue targets (jitted with event vs solve_ivp; event overhead, jitted and Python).
Timing is never asserted anywhere: it is measured here.

    python scripts/bench_events.py [--repeats 7] [--t1 200] [--rtol 1e-8]
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numba
import numpy as np
from scipy.integrate import solve_ivp

import odeflow
from odeflow.experiments.common import interleaved_medians


@numba.njit
def oscillator_jit(t, y):
    return np.array([y[1], -y[0]])


@numba.njit
def crossing_jit(t, y):
    return y[0]


def oscillator(t, y):
    return np.array([y[1], -y[0]])


def crossing(t, y):
    return y[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--t1", type=float, default=200.0)
    parser.add_argument("--rtol", type=float, default=1e-8)
    args = parser.parse_args(argv)
    rtol, atol, t1 = args.rtol, args.rtol * 1e-2, args.t1
    y0 = np.array([1.0, 0.0])
    t = np.array([0.0, t1])
    kw = dict(rtol=rtol, atol=atol, dense_output=False)
    results = {}

    def ours(func, events, samples=None):
        options = {"event_samples": samples} if samples else None

        def run():
            sol = odeflow.solve(func, y0, t, events=events, options=options, **kw)
            return sol.stats["nfe"], sol.t_events[0] if events is not None else None
        return run

    def scipy(events):
        def run():
            sol = solve_ivp(oscillator, (0.0, t1), y0, method="RK45", rtol=rtol, atol=atol, events=events)
            return sol.nfev, sol.t_events[0] if events is not None else None
        return run

    jobs = {
        "odeflow dopri5, @njit func + @njit event": ours(oscillator_jit, crossing_jit),
        "odeflow dopri5, @njit func + @njit event, event_samples=1": ours(oscillator_jit, crossing_jit, 1),
        "odeflow dopri5, @njit func, no event": ours(oscillator_jit, None),
        "odeflow dopri5, Python func + event": ours(oscillator, crossing),
        "odeflow dopri5, Python func, no event": ours(oscillator, None),
        "scipy solve_ivp RK45 + event": scipy(crossing),
        "scipy solve_ivp RK45, no event": scipy(None),
    }
    for name, fn in jobs.items():  # compile (jitted loops) and record nfe / accuracy
        nfe, times = fn()
        row = {"contender": name, "nfe": int(nfe)}
        if times is not None:
            exact = np.pi / 2 + np.pi * np.arange(times.size)
            row.update(n_events=int(times.size), max_event_time_error=float(np.abs(times - exact).max()))
        results[name] = row
    medians = interleaved_medians(jobs, args.repeats, batch_seconds=0.05)
    env = {"t1": t1, "rtol": rtol, "atol": atol, "repeats": args.repeats, "numba": numba.__version__,
           "python": platform.python_version(), "load_1min": os.getloadavg()[0]}
    for name, row in results.items():
        print(json.dumps(dict(row, median_s=medians[name], **env)))
    jit_ev = medians["odeflow dopri5, @njit func + @njit event"]
    summary = {
        "summary": True,
        "speedup_jit_event_vs_solve_ivp_event": medians["scipy solve_ivp RK45 + event"] / jit_ev,
        "event_overhead_jit": jit_ev / medians["odeflow dopri5, @njit func, no event"] - 1.0,
        "event_overhead_jit_samples_1": (medians["odeflow dopri5, @njit func + @njit event, event_samples=1"]
                                         / medians["odeflow dopri5, @njit func, no event"] - 1.0),
        "event_overhead_python": (medians["odeflow dopri5, Python func + event"]
                                  / medians["odeflow dopri5, Python func, no event"] - 1.0),
        "event_overhead_scipy": (medians["scipy solve_ivp RK45 + event"]
                                 / medians["scipy solve_ivp RK45, no event"] - 1.0),
        **env,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
