"""Benchmark odeflow's solvers against scipy (and torchdiffeq / diffrax when installed).

Non-stiff problems (dopri5, tsit5, dop853): one JSON object per line with
problem, rtol, solver, median wall time (s), nfe, max error at t1 against
scipy's DOP853 at rtol = 1e-13, the ratio of scipy RK45's median to this
solver's median and, for the dop853 rows, of scipy DOP853's.
Stiff problems (radau, ``"set": "stiff"``): Robertson, Van der Pol mu = 1000
and HIRES against scipy's Radau and BDF with the same analytic Jacobian; the
error is against scipy's LSODA at rtol = 1e-12 (scaled by atol + rtol |y|),
and ``radau_over_this`` is scipy Radau's median over this solver's.
All in the same run, interleaved; timing is never asserted anywhere.

Also (issue 14): the yardstick ``../shared/bench/nb_dopri5.py`` (a bare jitted
DOPRI5 loop with an in-place right-hand side, no dense output) when present,
odeflow with an in-place jitted func (``inplace=True``) on the same rows
(``over_yardstick``: odeflow's median over the yardstick's; ``diffrax_over_this``);
``"set": "overhead"`` rows (a one-step solve: the fixed cost of a call); and
``"set": "compile"`` rows (the first solve in a fresh process with a new ``@njit``
func and with a Python func, the loops already in the disk cache).

    python scripts/bench_solvers.py [--repeats 7] [--quick] [--only stiff|nonstiff|compile|overhead]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
from scipy.integrate import solve_ivp

import odeflow
from odeflow.experiments.common import interleaved_medians
from odeflow.problems import ARENSTORF_MU, PROBLEMS, STIFF_PROBLEMS


MU = ARENSTORF_MU


def peers():
    """Optional peers: (name, make_runner(f, y0, t1, rtol, atol) -> (callable returning (y1, nfe)))."""
    out = []
    try:
        import torch
        import torchdiffeq

        def make_torch(f, y0, t1, rtol, atol):
            yt = torch.tensor(y0, dtype=torch.float64)
            tt = torch.tensor([0.0, t1], dtype=torch.float64)

            class F(torch.nn.Module):
                nfe = 0

                def forward(self, t, y):
                    F.nfe += 1
                    return torch.from_numpy(f(float(t), y.numpy()))
            fm = F()

            def run():
                F.nfe = 0
                with torch.no_grad():
                    y = torchdiffeq.odeint(fm, yt, tt, rtol=rtol, atol=atol, method="dopri5")
                return y[-1].numpy(), F.nfe
            return run
        out.append((f"torchdiffeq {torchdiffeq.__version__} dopri5 (torch {torch.__version__})", make_torch))
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        import diffrax
        jax.config.update("jax_enable_x64", True)
        jfuncs = _jax_problems(jnp)

        def make_diffrax(f, y0, t1, rtol, atol):
            term = diffrax.ODETerm(jfuncs[f.__name__])
            controller = diffrax.PIDController(rtol=rtol, atol=atol)

            @jax.jit
            def solve(y):
                return diffrax.diffeqsolve(term, diffrax.Dopri5(), t0=0.0, t1=t1, dt0=None, y0=y,
                                           stepsize_controller=controller, max_steps=200_000)
            y = jnp.asarray(y0)

            def run():
                sol = solve(y)
                y1 = np.asarray(sol.ys[-1].block_until_ready())
                # Dopri5 is FSAL: 6 evaluations per attempted step, plus the first
                return y1, int(sol.stats["num_steps"]) * 6 + 1
            return run
        out.append((f"diffrax {diffrax.__version__} Dopri5 (jax.jit)", make_diffrax))

        def make_diffrax_other(solver_cls):
            def make(f, y0, t1, rtol, atol):
                term = diffrax.ODETerm(jfuncs[f.__name__])
                controller = diffrax.PIDController(rtol=rtol, atol=atol)

                @jax.jit
                def solve(y):
                    return diffrax.diffeqsolve(term, solver_cls(), t0=0.0, t1=t1, dt0=None, y0=y,
                                               stepsize_controller=controller, max_steps=200_000)
                y = jnp.asarray(y0)

                def run():
                    # evaluations are not reported by diffrax for these: nfe None
                    return np.asarray(solve(y).ys[-1].block_until_ready()), None
                return run
            return make
        for cls in (diffrax.Tsit5, diffrax.Dopri8):
            out.append((f"diffrax {diffrax.__version__} {cls.__name__} (jax.jit)", make_diffrax_other(cls)))
    except ImportError:
        pass
    return out


def yardstick():
    """``nb_dopri5`` from ``../shared/bench`` (next to the repository or one level up), or None."""
    root = Path(__file__).resolve().parents[1]
    for base in (root.parent / "shared" / "bench", root.parent.parent / "shared" / "bench"):
        path = base / "nb_dopri5.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location("nb_dopri5", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def inplace_problems():
    """The four non-stiff right-hand sides written in place, ``f(t, y, dydt)`` (odeflow's
    ``inplace=True``), and the yardstick's ``f(t, y, p, dydt)`` calling them; all jitted."""
    def lorenz(t, y, d):
        d[0] = 10.0 * (y[1] - y[0])
        d[1] = y[0] * (28.0 - y[2]) - y[1]
        d[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]

    def van_der_pol(t, y, d):
        d[0] = y[1]
        d[1] = (1.0 - y[0] * y[0]) * y[1] - y[0]

    def arenstorf(t, y, d):
        mu = MU
        mup = 1.0 - mu
        d1 = ((y[0] + mu) ** 2 + y[1] ** 2) ** 1.5
        d2 = ((y[0] - mup) ** 2 + y[1] ** 2) ** 1.5
        d[0] = y[2]
        d[1] = y[3]
        d[2] = y[0] + 2.0 * y[3] - mup * (y[0] + mu) / d1 - mu * (y[0] - mup) / d2
        d[3] = y[1] - 2.0 * y[2] - mup * y[1] / d1 - mu * y[1] / d2

    def kepler(t, y, d):
        r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
        d[0] = y[2]
        d[1] = y[3]
        d[2] = -y[0] / r3
        d[3] = -y[1] / r3
    out = {}
    for f in (lorenz, van_der_pol, arenstorf, kepler):
        fi = numba.njit(f)

        def with_p(t, y, p, d, fi=fi):
            fi(t, y, d)
        out[f.__name__] = (fi, numba.njit(with_p))
    return out


def _jax_problems(jnp):
    """The same right-hand sides written for JAX (diffrax's f(t, y, args))."""
    def lorenz_j(t, y, args):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (28.0 - y[2]) - y[1], y[0] * y[1] - 8.0 / 3.0 * y[2]])

    def vdp_j(t, y, args):
        return jnp.stack([y[1], (1.0 - y[0] ** 2) * y[1] - y[0]])

    def arenstorf_j(t, y, args):
        mup = 1.0 - MU
        d1 = ((y[0] + MU) ** 2 + y[1] ** 2) ** 1.5
        d2 = ((y[0] - mup) ** 2 + y[1] ** 2) ** 1.5
        return jnp.stack([y[2], y[3], y[0] + 2.0 * y[3] - mup * (y[0] + MU) / d1 - MU * (y[0] - mup) / d2,
                          y[1] - 2.0 * y[2] - mup * y[1] / d1 - MU * y[1] / d2])

    def kepler_j(t, y, args):
        r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
        return jnp.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])
    return {"lorenz": lorenz_j, "van_der_pol": vdp_j, "arenstorf": arenstorf_j, "kepler": kepler_j}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one tolerance, 3 repeats")
    parser.add_argument("--batch-ms", type=float, default=20.0,
                        help="time each solver in turns of at least this long (default 20 ms)")
    parser.add_argument("--only", choices=("stiff", "nonstiff", "compile", "overhead"), default=None)
    parser.add_argument("--fresh", help=argparse.SUPPRESS)  # internal: one first-solve timing
    args = parser.parse_args()
    if args.fresh:
        return fresh_first_solve(args.fresh)
    rtols = [1e-6] if args.quick else [1e-3, 1e-6, 1e-9]
    repeats = 3 if args.quick else args.repeats
    print(json.dumps({"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                      "numpy": np.__version__, "numba": numba.__version__, "odeflow": odeflow.__version__}))
    print(json.dumps({"uptime_load_1_5_15": list(os.getloadavg())}), flush=True)
    if args.only in (None, "compile"):
        compile_rows()
    if args.only in (None, "overhead"):
        overhead_rows(repeats)
    if args.only in (None, "stiff"):
        stiff_rows([1e-6] if args.quick else [1e-4, 1e-6, 1e-8], repeats, args.batch_ms * 1e-3)
    if args.only not in (None, "nonstiff"):
        return
    yard = yardstick()
    inplace = inplace_problems()
    for name, (f, y0, t1) in PROBLEMS.items():
        ref = solve_ivp(f, (0.0, t1), y0, method="DOP853", rtol=1e-13, atol=1e-16).y[:, -1]
        fj = numba.njit(f)
        start = time.perf_counter()
        odeflow.odeint(fj, y0, [0.0, t1])
        compile_s = time.perf_counter() - start
        fi, fy = inplace[name]
        odeflow.odeint(fi, y0, [0.0, t1], inplace=True)
        if yard is not None:
            yard.dopri5(fy, 0.0, t1, y0, np.zeros(1), 1e-6, 1e-9)
        for rtol in rtols:
            atol = rtol * 1e-3
            runners = {
                "odeflow dopri5 (njit in-place func, controller i)":
                    lambda: _odeflow(fi, y0, t1, rtol, atol, "i", inplace=True),
                "odeflow dopri5 (njit func)": lambda: _odeflow(fj, y0, t1, rtol, atol),
                # RK45's own step-size rule: the same steps, so the same nfe as RK45
                "odeflow dopri5 (njit func, controller i)": lambda: _odeflow(fj, y0, t1, rtol, atol, "i"),
                "odeflow dopri5 (Python func)": lambda: _odeflow(f, y0, t1, rtol, atol),
                "odeflow tsit5 (njit func)": lambda: _odeflow(fj, y0, t1, rtol, atol, method="tsit5"),
                "odeflow dop853 (njit func)": lambda: _odeflow(fj, y0, t1, rtol, atol, method="dop853"),
                # scipy DOP853's own step-size rule: same decisions, same nfe
                "odeflow dop853 (njit func, controller i)": lambda: _odeflow(fj, y0, t1, rtol, atol, "i",
                                                                             method="dop853"),
                "odeflow dop853 (Python func)": lambda: _odeflow(f, y0, t1, rtol, atol, method="dop853"),
                "scipy RK45": lambda: _scipy(f, y0, t1, rtol, atol, "RK45"),
                "scipy DOP853": lambda: _scipy(f, y0, t1, rtol, atol, "DOP853"),
            }
            if yard is not None:
                runners["yardstick nb_dopri5 (njit in-place)"] = lambda: _yard(yard, fy, y0, t1, rtol, atol)
            for peer, make in peers():
                runners[peer] = make(f, y0, t1, rtol, atol)
            first = {solver: fn() for solver, fn in runners.items()}  # warm-up, answers, nfe
            medians = interleaved_medians(runners, repeats, batch_seconds=args.batch_ms * 1e-3,
                                          warm_each_turn=True)
            results = {solver: (medians[solver], nfe, float(np.abs(y1 - ref).max()))
                       for solver, (y1, nfe) in first.items()}
            base = results["scipy RK45"][0]
            base853 = results["scipy DOP853"][0]
            yard_s = results.get("yardstick nb_dopri5 (njit in-place)", (None,))[0]
            dx_s = next((v[0] for k, v in results.items() if k.startswith("diffrax") and "Dopri5" in k), None)
            for solver, (median, nfe, err) in results.items():
                row = {"problem": name, "rtol": rtol, "atol": atol, "solver": solver, "median_s": median,
                       "nfe": nfe, "error_vs_dop853": err, "rk45_over_this": base / median}
                if "dop853" in solver.lower() or "dopri8" in solver.lower():
                    row["scipy_dop853_over_this"] = base853 / median
                if "(njit func" in solver:
                    row["first_call_s_incl_compile"] = compile_s
                if yard_s is not None and solver.startswith("odeflow dopri5"):
                    row["over_yardstick"] = median / yard_s
                if dx_s is not None and solver.startswith("odeflow"):
                    row["diffrax_over_this"] = dx_s / median
                print(json.dumps(row), flush=True)


def _odeflow(f, y0, t1, rtol, atol, controller="pi", method="dopri5", inplace=False):
    # no dense output, as solve_ivp's default (dense_output=False)
    sol = odeflow.solve(f, y0, [0.0, t1], rtol=rtol, atol=atol, dense_output=False, method=method,
                        options={"controller": controller}, inplace=inplace)
    return sol.y[-1], sol.stats["nfe"]


def _yard(yard, fy, y0, t1, rtol, atol):
    y1, nfe, _, _ = yard.dopri5(fy, 0.0, t1, y0, np.zeros(1), rtol, atol)
    return y1, nfe


def overhead_rows(repeats):
    """The fixed cost of a solve: one step of Lorenz (h = 1e-3, first_step given), medians of
    interleaved batches; odeflow in place and out of place, the yardstick, scipy RK45."""
    inplace = inplace_problems()
    fi, fy = inplace["lorenz"]
    f = PROBLEMS["lorenz"][0]
    fj = numba.njit(f)
    y0, h = PROBLEMS["lorenz"][1], 1e-3
    opts = {"first_step": h, "controller": "i"}
    runners = {
        "odeflow dopri5 (njit in-place func)": lambda: odeflow.solve(
            fi, y0, [0.0, h], dense_output=False, inplace=True, options=opts).stats["nfe"],
        "odeflow dopri5 (njit func)": lambda: odeflow.solve(fj, y0, [0.0, h], dense_output=False,
                                                            options=opts).stats["nfe"],
        "odeflow dopri5 (Python func)": lambda: odeflow.solve(f, y0, [0.0, h], dense_output=False,
                                                              options=opts).stats["nfe"],
        "scipy RK45": lambda: solve_ivp(f, (0.0, h), y0, first_step=h).nfev,
    }
    yard = yardstick()
    if yard is not None:
        runners["yardstick nb_dopri5 (njit in-place)"] = lambda: yard.dopri5(
            fy, 0.0, h, y0, np.zeros(1), 1e-7, 1e-9)[1]
    nfe = {k: fn() for k, fn in runners.items()}
    medians = interleaved_medians(runners, repeats, batch_seconds=0.02, warm_each_turn=True)
    for solver, median in medians.items():
        print(json.dumps({"set": "overhead", "problem": "lorenz, one step", "solver": solver,
                          "median_s": median, "nfe": nfe[solver]}), flush=True)


def fresh_first_solve(kind):
    """(In a fresh process) time ``import odeflow`` and the first solve with a new func."""
    start = time.perf_counter()
    import odeflow as of  # noqa: F401 (timed)
    t_import = time.perf_counter() - start
    src = "def f(t, y, k):\n    return np.array([y[1], -k * y[0]])\n"
    scope = {"np": np}
    exec(src, scope)
    f = numba.njit(scope["f"]) if kind == "njit" else scope["f"]
    start = time.perf_counter()
    sol = of.solve(f, np.array([1.0, 0.0]), [0.0, 1.0], args=(2.0,))
    first = time.perf_counter() - start
    print(json.dumps({"set": "compile", "func": kind, "import_s": t_import, "first_solve_s": first,
                      "compile_seconds": sol.stats.get("compile_seconds", 0.0)}), flush=True)


def compile_rows():
    """The first solve in a fresh process, twice each (the first run may fill the disk cache)."""
    env = dict(os.environ)
    for kind in ("njit", "python"):
        for attempt in (1, 2):
            out = subprocess.run([sys.executable, __file__, "--fresh", kind], capture_output=True,
                                 text=True, env=env, check=True).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            row["attempt"] = attempt
            print(json.dumps(row), flush=True)


def stiff_rows(rtols, repeats, batch_seconds):
    """radau (jitted func and jac; Python func and jac) vs scipy Radau and BDF, one JSON line each."""
    for name, (f, jac, y0, t1) in STIFF_PROBLEMS.items():
        ref = solve_ivp(f, (0.0, t1), y0, method="LSODA", rtol=1e-12, atol=1e-14, jac=jac).y[:, -1]
        fj, jj = numba.njit(f), numba.njit(jac)
        start = time.perf_counter()
        odeflow.odeint(fj, y0, [0.0, t1], method="radau", options={"jac": jj})
        compile_s = time.perf_counter() - start
        for rtol in rtols:
            atol = rtol * 1e-4 if name == "robertson" else rtol

            def ours(func, jacobian):
                sol = odeflow.solve(func, y0, [0.0, t1], rtol=rtol, atol=atol, method="radau",
                                    dense_output=False, options={"jac": jacobian})
                return sol.y[-1], sol.stats["nfe"]

            def theirs(method):
                r = solve_ivp(f, (0.0, t1), y0, method=method, rtol=rtol, atol=atol, jac=jac)
                return r.y[:, -1], r.nfev

            runners = {"odeflow radau (njit func and jac)": lambda: ours(fj, jj),
                       "odeflow radau (Python func and jac)": lambda: ours(f, jac),
                       "scipy Radau": lambda: theirs("Radau"), "scipy BDF": lambda: theirs("BDF")}
            first = {solver: fn() for solver, fn in runners.items()}
            medians = interleaved_medians(runners, repeats, batch_seconds=batch_seconds, warm_each_turn=True)
            scale = atol + rtol * np.abs(ref)
            for solver, (y1, nfe) in first.items():
                row = {"set": "stiff", "problem": name, "rtol": rtol, "atol": atol, "solver": solver,
                       "median_s": medians[solver], "nfe": nfe,
                       "error_over_tol": float(np.max(np.abs(y1 - ref) / scale)),
                       "radau_over_this": medians["scipy Radau"] / medians[solver]}
                if "njit" in solver:
                    row["first_call_s_incl_compile"] = compile_s
                print(json.dumps(row), flush=True)


def _scipy(f, y0, t1, rtol, atol, method):
    r = solve_ivp(f, (0.0, t1), y0, method=method, rtol=rtol, atol=atol)
    return r.y[:, -1], r.nfev


if __name__ == "__main__":
    main()
