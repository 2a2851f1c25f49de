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
           "ARENSTORF_PERIOD", "KEPLER_E", "PROBLEMS", "robertson", "robertson_jac", "van_der_pol_stiff",
           "van_der_pol_stiff_jac", "hires", "hires_jac", "VDP_STIFF_EPS", "STIFF_PROBLEMS"]

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


# --- stiff problems (Hairer & Wanner, *Solving ODEs II*, §IV.1 and §IV.10) -------------

def robertson(t, y):
    """Robertson's chemical kinetics (HW II §IV.1, eq. 1.4); shape (3,), y0 = (1, 0, 0)."""
    out = np.empty(3)
    out[0] = -0.04 * y[0] + 1e4 * y[1] * y[2]
    out[1] = 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] * y[1]
    out[2] = 3e7 * y[1] * y[1]
    return out


def robertson_jac(t, y):
    """df/dy of :func:`robertson`, shape (3, 3)."""
    J = np.zeros((3, 3))
    J[0, 0] = -0.04
    J[0, 1] = 1e4 * y[2]
    J[0, 2] = 1e4 * y[1]
    J[1, 0] = 0.04
    J[1, 1] = -1e4 * y[2] - 6e7 * y[1]
    J[1, 2] = -1e4 * y[1]
    J[2, 1] = 6e7 * y[1]
    return J


VDP_STIFF_EPS = 1e-6  # mu = 1000 in HW's scaled form (eps = 1 / mu^2)


def van_der_pol_stiff(t, y):
    """Van der Pol with mu = 1000 in HW's scaled form VDPOL (HW II §IV.1, eq. 1.5'):
    y1' = y2, y2' = ((1 - y1^2) y2 - y1) / eps, eps = 1e-6; y0 = (2, -0.66), t in [0, 2]."""
    out = np.empty(2)
    out[0] = y[1]
    out[1] = ((1.0 - y[0] * y[0]) * y[1] - y[0]) / VDP_STIFF_EPS
    return out


def van_der_pol_stiff_jac(t, y):
    """df/dy of :func:`van_der_pol_stiff`, shape (2, 2)."""
    J = np.zeros((2, 2))
    J[0, 1] = 1.0
    J[1, 0] = (-2.0 * y[0] * y[1] - 1.0) / VDP_STIFF_EPS
    J[1, 1] = (1.0 - y[0] * y[0]) / VDP_STIFF_EPS
    return J


def hires(t, y):
    """HIRES, plant physiology (HW II §IV.10); shape (8,), t in [0, 321.8122]."""
    out = np.empty(8)
    out[0] = -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007
    out[1] = 1.71 * y[0] - 8.75 * y[1]
    out[2] = -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4]
    out[3] = 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3]
    out[4] = -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6]
    out[5] = -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6]
    out[6] = 280.0 * y[5] * y[7] - 1.81 * y[6]
    out[7] = -280.0 * y[5] * y[7] + 1.81 * y[6]
    return out


def hires_jac(t, y):
    """df/dy of :func:`hires`, shape (8, 8)."""
    J = np.zeros((8, 8))
    J[0, 0], J[0, 1], J[0, 2] = -1.71, 0.43, 8.32
    J[1, 0], J[1, 1] = 1.71, -8.75
    J[2, 2], J[2, 3], J[2, 4] = -10.03, 0.43, 0.035
    J[3, 1], J[3, 2], J[3, 3] = 8.32, 1.71, -1.12
    J[4, 4], J[4, 5], J[4, 6] = -1.745, 0.43, 0.43
    J[5, 3], J[5, 4], J[5, 5], J[5, 6], J[5, 7] = 0.69, 1.71, -280.0 * y[7] - 0.43, 0.69, -280.0 * y[5]
    J[6, 5], J[6, 6], J[6, 7] = 280.0 * y[7], -1.81, 280.0 * y[5]
    J[7, 5], J[7, 6], J[7, 7] = -280.0 * y[7], 1.81, -280.0 * y[5]
    return J


# name -> (func, jac, y0, t1): the stiff benchmark set of scripts/bench_solvers.py
STIFF_PROBLEMS = {
    "robertson": (robertson, robertson_jac, np.array([1.0, 0.0, 0.0]), 1e5),
    "van_der_pol_mu1000": (van_der_pol_stiff, van_der_pol_stiff_jac, np.array([2.0, -0.66]), 2.0),
    "hires": (hires, hires_jac, np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057]), 321.8122),
}
