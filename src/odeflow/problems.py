"""Classic ODE test problems, written so Numba can compile them.

Each right-hand side ``f(t, y)`` builds its result in a fresh ``np.empty``
array and uses only scalar arithmetic, so ``numba.njit(f)`` compiles it and the
whole solve can run in nopython mode (:mod:`odeflow.solvers.loop`). They serve
the demo, the benchmarks and the tests.

References
----------
.. [1] E. Hairer, S. P. Nørsett, G. Wanner, "Solving Ordinary Differential
       Equations I", 2nd ed., Springer 1993: §II.0 (Arenstorf orbit, eq. 0.1),
       §I.16 (Lorenz), §I.16 / §IV (Van der Pol).
"""
from __future__ import annotations

import numpy as np

__all__ = ["lorenz", "van_der_pol", "arenstorf", "kepler", "ARENSTORF_MU", "ARENSTORF_Y0",
           "ARENSTORF_PERIOD", "KEPLER_E", "PROBLEMS"]

ARENSTORF_MU = 0.012277471
ARENSTORF_Y0 = np.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224])
ARENSTORF_PERIOD = 17.0652165601579625588917206249
KEPLER_E = 0.5


def lorenz(t, y):
    """Lorenz (1963) with sigma = 10, rho = 28, beta = 8/3; shape (3,)."""
    out = np.empty(3)
    out[0] = 10.0 * (y[1] - y[0])
    out[1] = y[0] * (28.0 - y[2]) - y[1]
    out[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]
    return out


def van_der_pol(t, y):
    """Van der Pol oscillator with mu = 1; shape (2,)."""
    out = np.empty(2)
    out[0] = y[1]
    out[1] = (1.0 - y[0] * y[0]) * y[1] - y[0]
    return out


def arenstorf(t, y):
    """Restricted three-body problem (HNW eq. II.0.1): a periodic orbit; shape (4,)."""
    mu = ARENSTORF_MU
    mup = 1.0 - mu
    d1 = ((y[0] + mu) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - mup) ** 2 + y[1] ** 2) ** 1.5
    out = np.empty(4)
    out[0] = y[2]
    out[1] = y[3]
    out[2] = y[0] + 2.0 * y[3] - mup * (y[0] + mu) / d1 - mu * (y[0] - mup) / d2
    out[3] = y[1] - 2.0 * y[2] - mup * y[1] / d1 - mu * y[1] / d2
    return out


def kepler(t, y):
    """Two-body problem in the plane, ``q'' = -q / |q|^3``; shape (4,) = (q1, q2, p1, p2)."""
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    out = np.empty(4)
    out[0] = y[2]
    out[1] = y[3]
    out[2] = -y[0] / r3
    out[3] = -y[1] / r3
    return out


# name -> (func, y0, t1): the benchmark set of scripts/bench_solvers.py
PROBLEMS = {
    "lorenz": (lorenz, np.array([1.0, 1.0, 1.0]), 2.0),
    "van_der_pol": (van_der_pol, np.array([2.0, 0.0]), 20.0),
    "arenstorf": (arenstorf, ARENSTORF_Y0, ARENSTORF_PERIOD),
    # eccentricity 0.5 from the pericentre, 10 periods of 2 pi
    "kepler": (kepler, np.array([1.0 - KEPLER_E, 0.0, 0.0, np.sqrt((1.0 + KEPLER_E) / (1.0 - KEPLER_E))]),
               20.0 * np.pi),
}
