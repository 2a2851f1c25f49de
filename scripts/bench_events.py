"""Benchmark event location: odeflow with and without an event, jitted and Python func,
against scipy's ``solve_ivp(events=...)`` with the same event, in one interleaved run.

Event sampling: the default ``options["event_samples"] = 4`` (sign changes looked
for in four sub-intervals per step: several roots per step found) and 1 (step
ends only, as scipy).

Problems, on [0, t1] with the event g = y[0] (non-terminal, every crossing):
the harmonic oscillator y = (cos t, -sin t) (cheapest possible func; event
times against the closed form pi/2 + k pi), and a 40-dimensional skew-symmetric
linear system y' = S y (a func doing real work; event times against scipy's
DOP853 at rtol 1e-13). dopri5 / RK45 at the same tolerances. Prints one JSON
object per line: the contender, median wall time (s), nfe, number of events and
the max event-time error; then per problem a summary line with the ratios the
issue targets (jitted with event vs solve_ivp; event overhead, jitted and Python).
``--markdown`` also prints the table of docs/events.md.
Timing is never asserted anywhere: it is measured here.

    python scripts/bench_events.py [--repeats 7] [--t1 200] [--rtol 1e-8] [--markdown]
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


N_LINEAR = 40
_rng = np.random.default_rng(0)
_B = _rng.standard_normal((N_LINEAR, N_LINEAR))
SKEW = (_B - _B.T) / np.sqrt(N_LINEAR)   # y' = S y, S skew: bounded rotations, y[0] crosses zero often


@numba.njit
def oscillator_jit(t, y):
    return np.array([y[1], -y[0]])


@numba.njit
def linear_jit(t, y):
    return SKEW @ y


@numba.njit
def crossing_jit(t, y):
    return y[0]


def oscillator(t, y):
    return np.array([y[1], -y[0]])


def linear(t, y):
    return SKEW @ y


def crossing(t, y):
    return y[0]


PROBLEMS = {  # name -> (Python func, jitted func, y0, exact event times or None)
    "oscillator (n=2)": (oscillator, oscillator_jit, np.array([1.0, 0.0]),
                         lambda k: np.pi / 2 + np.pi * np.arange(k)),
    f"skew linear (n={N_LINEAR})": (linear, linear_jit, np.ones(N_LINEAR) / np.sqrt(N_LINEAR), None),
}


def bench(problem, t1, rtol, repeats):
    """JSON rows for one problem: every contender, then a summary with the ratios."""
    func, func_jit, y0, exact = PROBLEMS[problem]
    atol = rtol * 1e-2
    t = np.array([0.0, t1])
    kw = dict(rtol=rtol, atol=atol, dense_output=False)

    def ours(f, events, samples=None):
        options = {"event_samples": samples} if samples else None

        def run():
            sol = odeflow.solve(f, y0, t, events=events, options=options, **kw)
            return sol.stats["nfe"], sol.t_events[0] if events is not None else None
        return run

    def scipy(events):
        def run():
            sol = solve_ivp(func, (0.0, t1), y0, method="RK45", rtol=rtol, atol=atol, events=events)
            return sol.nfev, sol.t_events[0] if events is not None else None
        return run

    jobs = {
        "odeflow dopri5, @njit func + @njit event": ours(func_jit, crossing_jit),
        "odeflow dopri5, @njit func + @njit event, event_samples=1": ours(func_jit, crossing_jit, 1),
        "odeflow dopri5, @njit func, no event": ours(func_jit, None),
        "odeflow dopri5, Python func + event": ours(func, crossing),
        "odeflow dopri5, Python func, no event": ours(func, None),
        "scipy solve_ivp RK45 + event": scipy(crossing),
        "scipy solve_ivp RK45, no event": scipy(None),
    }
    rows = {}
    reference = solve_ivp(func, (0.0, t1), y0, method="DOP853", rtol=1e-13, atol=1e-15,
                          events=crossing).t_events[0] if exact is None else exact(10 ** 6)
    for name, fn in jobs.items():  # compile (jitted loops) and record nfe / accuracy
        nfe, times = fn()
        row = {"problem": problem, "contender": name, "nfe": int(nfe)}
        if times is not None:
            row["n_events"] = int(times.size)
            if times.size <= reference.size:
                row["max_event_time_error"] = float(np.abs(times - reference[: times.size]).max())
        rows[name] = row
    medians = interleaved_medians(jobs, repeats, batch_seconds=0.05)
    env = {"t1": t1, "rtol": rtol, "atol": atol, "repeats": repeats, "numba": numba.__version__,
           "python": platform.python_version(), "load_1min": os.getloadavg()[0]}
    out = [dict(row, median_s=medians[name], **env) for name, row in rows.items()]
    base_jit = medians["odeflow dopri5, @njit func, no event"]
    jit_ev = medians["odeflow dopri5, @njit func + @njit event"]
    out.append({
        "problem": problem, "summary": True,
        "speedup_jit_event_vs_solve_ivp_event": medians["scipy solve_ivp RK45 + event"] / jit_ev,
        "event_overhead_jit": jit_ev / base_jit - 1.0,
        "event_overhead_jit_samples_1": (medians["odeflow dopri5, @njit func + @njit event, event_samples=1"]
                                         / base_jit - 1.0),
        "event_overhead_python": (medians["odeflow dopri5, Python func + event"]
                                  / medians["odeflow dopri5, Python func, no event"] - 1.0),
        "event_overhead_scipy": (medians["scipy solve_ivp RK45 + event"]
                                 / medians["scipy solve_ivp RK45, no event"] - 1.0),
        **env,
    })
    return out


def markdown(rows):
    """The docs table (docs/events.md) from the summary rows."""
    lines = ["| problem | jitted + event vs solve_ivp + event | event overhead: jitted (4 samples) | "
             "jitted (1 sample) | Python func | scipy |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("summary"):
            lines.append(f"| {r['problem']} | {r['speedup_jit_event_vs_solve_ivp_event']:.0f}x | "
                         f"{100 * r['event_overhead_jit']:+.0f} % | {100 * r['event_overhead_jit_samples_1']:+.0f} % | "
                         f"{100 * r['event_overhead_python']:+.0f} % | {100 * r['event_overhead_scipy']:+.0f} % |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--t1", type=float, default=200.0)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--markdown", action="store_true", help="also print the docs table")
    args = parser.parse_args(argv)
    rows = []
    for problem in PROBLEMS:
        for row in bench(problem, args.t1, args.rtol, args.repeats):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
