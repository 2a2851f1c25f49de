"""Stiff test problems (Hairer & Wanner, *Solving ODEs II*, §IV.1 and §IV.10), stated
here from the book, independently of odeflow."""
import numba
import numpy as np


def robertson(t, y):
    """Robertson's chemical kinetics (HW II §IV.1, eq. 1.4), y0 = (1, 0, 0)."""
    return np.array([-0.04 * y[0] + 1e4 * y[1] * y[2],
                     0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                     3e7 * y[1] ** 2])


def robertson_jac(t, y):
    return np.array([[-0.04, 1e4 * y[2], 1e4 * y[1]],
                     [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]],
                     [0.0, 6e7 * y[1], 0.0]])


robertson_jit = numba.njit(robertson)
robertson_jac_jit = numba.njit(robertson_jac)


def van_der_pol_scaled(mu):
    """Van der Pol in HW's scaled form (VDPOL, HW II §IV.1, eq. 1.5'): with time
    t = x / mu and eps = 1 / mu^2, y1' = y2, y2' = ((1 - y1^2) y2 - y1) / eps;
    y0 = (2, -0.66), t in [0, 2] (about one period of the relaxation oscillation)."""
    eps = 1.0 / mu ** 2

    def func(t, y):
        return np.array([y[1], ((1.0 - y[0] ** 2) * y[1] - y[0]) / eps])

    def jac(t, y):
        return np.array([[0.0, 1.0], [(-2.0 * y[0] * y[1] - 1.0) / eps, (1.0 - y[0] ** 2) / eps]])

    return func, jac


def hires(t, y):
    """HIRES, plant physiology (HW II §IV.10), y0 = HIRES_Y0, t in [0, 321.8122]."""
    return np.array([
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
        1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
        8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280.0 * y[5] * y[7] - 1.81 * y[6],
        -280.0 * y[5] * y[7] + 1.81 * y[6]])


HIRES_Y0 = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057])
HIRES_T = 321.8122
