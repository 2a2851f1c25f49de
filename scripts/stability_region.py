"""Stability regions of odeflow's Runge–Kutta methods, as text (for docs/stiff.md).

A Runge–Kutta method applied to y' = lambda y multiplies y by the stability
function R(z) = 1 + z b^T (I - z A)^-1 1 per step, z = h lambda (HW II §IV.2-3).
The step is stable where |R(z)| <= 1. Prints an ASCII picture of that region for
dopri5, the real-axis boundary of every explicit method, and |R| of Radau IIA
far out on the negative real axis (A- and L-stability).

    python scripts/stability_region.py
"""
from __future__ import annotations

import numpy as np

from odeflow.solvers import radau
from odeflow.solvers.tableau import TABLEAUX


def stability_function(A, b, z):
    """R(z) for a Runge–Kutta method with matrix A and weights b (z complex)."""
    s = len(b)
    return 1.0 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))


def real_boundary(A, b):
    """The most negative x with |R(x)| <= 1 on [x, 0] (bisection on a fine grid)."""
    xs = np.linspace(0.0, -20.0, 200001)
    ok = np.array([abs(stability_function(A, b, x)) <= 1.0 + 1e-12 for x in xs])
    return float(xs[np.argmin(ok)]) if not ok.all() else -np.inf


def main():
    tab = TABLEAUX["dopri5"]
    s = tab.n_stages
    A, b = tab.A_arr[:s, :s], tab.b_arr[:s]
    print("dopri5: |R(h lambda)| <= 1 is '#', real axis Re in [-5, 1] (left to right), Im in [-4, 4]")
    for im in np.linspace(4.0, -4.0, 17):
        row = ""
        for re in np.linspace(-5.0, 1.0, 61):
            row += "#" if abs(stability_function(A, b, complex(re, im))) <= 1.0 else "."
        print(f"{im:+5.1f} {row}")
    print()
    for name in ("dopri5", "tsit5", "dop853", "bosh3", "rk4"):
        tab = TABLEAUX[name]
        s = tab.n_stages if not tab.fsal else tab.n_stages - 1  # the FSAL stage is the next step's
        print(f"{name:7s} stable on the negative real axis down to h*lambda = "
              f"{real_boundary(tab.A_arr[:s, :s], tab.b_arr[:s]):.3f}")
    b_radau = radau.A[2]
    for x in (-1.0, -10.0, -1e3, -1e6):
        print(f"radau   |R({x:g})| = {abs(stability_function(radau.A, b_radau, x)):.3g}")


if __name__ == "__main__":
    main()
