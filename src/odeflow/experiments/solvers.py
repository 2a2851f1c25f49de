"""The solver on classic problems (the first part of ``odeflow demo``), checked against published
numbers and timed against scipy in the same run.

1. The Arenstorf orbit with Hairer's DOPRI5 settings: step counts and end state
   against the values published with DOPRI5 (HNW §II.0 and ``dr_dopri5.f``).
2. Lorenz and Arenstorf timed for odeflow (jitted and plain Python ``func``)
   against scipy's ``solve_ivp(method="RK45")``: medians, measured side by side.
3. A figure of the orbit (matplotlib, when installed) in the output folder.
"""
from __future__ import annotations

import numpy as np

__all__ = ["demo"]

# published with Hairer's DOPRI5 (shared/design/REFERENCES.md)
_HAIRER = {"n_accepted": 217, "n_rejected": 21, "y1": 0.9940021704030663, "y2": 9.040891036151961e-06}


def demo(out_dir, quick) -> dict:
    import numba
    from scipy.integrate import solve_ivp

    import odeflow
    from odeflow.experiments.common import matplotlib_pyplot, median_seconds, output_dir, save_figure
    from odeflow.problems import ARENSTORF_PERIOD as _T, ARENSTORF_Y0 as _Y0, arenstorf, lorenz

    out_dir = output_dir(out_dir)
    repeats = 3 if quick else 7

    print("== The solver: adaptive Dormand-Prince 5(4) on classic problems\n")
    sol = odeflow.solve(arenstorf, _Y0, np.linspace(0.0, _T, 400), rtol=1e-7, atol=1e-7,
                        options={"first_step": 1e-4, "controller": "pi"})
    print("1. Arenstorf orbit, rtol = atol = 1e-7, first step 1e-4 (Hairer's DOPRI5 settings)")
    print(f"   {'':22s}{'odeflow':>24s}{'Hairer DOPRI5':>24s}")
    print(f"   {'accepted steps':22s}{sol.stats['n_accepted']:>24d}{_HAIRER['n_accepted']:>24d}")
    print(f"   {'rejected steps':22s}{sol.stats['n_rejected']:>24d}{_HAIRER['n_rejected']:>24d}")
    print(f"   {'y1(T)':22s}{sol.y[-1, 0]:>24.16f}{_HAIRER['y1']:>24.16f}")
    print(f"   {'y2(T)':22s}{sol.y[-1, 1]:>24.16e}{_HAIRER['y2']:>24.16e}\n")

    rows = []
    print("2. Wall time, median of", repeats, "runs each, measured side by side (rtol = 1e-6, atol = 1e-9)")
    print(f"   {'problem':12s}{'solver':22s}{'nfe':>7s}{'median ms':>11s}{'vs RK45':>9s}")
    for name, f, y0, t1 in (("lorenz", lorenz, np.ones(3), 2.0), ("arenstorf", arenstorf, _Y0, _T)):
        fj = numba.njit(f)
        odeflow.odeint(fj, y0, [0.0, t1], rtol=1e-6, atol=1e-9)  # compile outside the timing
        runs = {
            "odeflow (njit func)": (lambda: odeflow.solve(fj, y0, [0.0, t1], rtol=1e-6, atol=1e-9)),
            "odeflow (Python func)": (lambda: odeflow.solve(f, y0, [0.0, t1], rtol=1e-6, atol=1e-9)),
            "scipy RK45": (lambda: solve_ivp(f, (0.0, t1), y0, rtol=1e-6, atol=1e-9)),
        }
        nfes = {k: (v().stats["nfe"] if k.startswith("odeflow") else v().nfev) for k, v in runs.items()}
        times = {k: median_seconds(v, repeats) for k, v in runs.items()}
        for k in runs:
            ratio = times["scipy RK45"] / times[k]
            print(f"   {name:12s}{k:22s}{nfes[k]:>7d}{times[k] * 1e3:>11.3f}{ratio:>8.1f}x")
            rows.append({"problem": name, "solver": k, "nfe": nfes[k], "median_s": times[k],
                         "speedup_vs_rk45": ratio})
    summary = {"arenstorf": {"stats": sol.stats, "y_end": sol.y[-1].tolist(), "hairer": _HAIRER},
               "timings": rows}
    plt = matplotlib_pyplot()
    if plt is None:
        print("\n(matplotlib not installed: no figure; pip install 'odeflow[examples]')")
        return summary
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(sol.y[:, 0], sol.y[:, 1], lw=1, label="dense output, 400 points")
    # the output times do not change the steps: the same solve shows both
    ax.plot(sol.y_steps[:, 0], sol.y_steps[:, 1], ".", ms=3, label="accepted steps")
    ax.set_xlabel("y1")
    ax.set_ylabel("y2")
    ax.set_title("Arenstorf orbit, dopri5")
    ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, out_dir / "arenstorf.png")
    return summary
