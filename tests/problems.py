"""Test problems with exact or published solutions (torchdiffeq's problems.py idea)."""
import numba
import numpy as np

from odeflow.problems import arenstorf  # noqa: F401  (re-exported for the tests)

# Arenstorf orbit (HNW §II.0, eq. 0.1): the restricted three-body problem.
# The constants are restated here from the source, independently of odeflow.problems.
# Published DOPRI5 result, rtol = atol = 1e-7, first step 1e-4, one period
# (shared/design/REFERENCES.md, from Hairer's dopri5 driver output).
ARENSTORF_MU = 0.012277471
ARENSTORF_Y0 = np.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224])
ARENSTORF_T = 17.0652165601579625588917206249
ARENSTORF_HAIRER = {"n_accepted": 217, "n_rejected": 21,
                    "y1": 0.9940021704030663, "y2": 9.040891036151961e-06}


arenstorf_jit = numba.njit(arenstorf)


def van_der_pol(t, y, mu=1.0):
    return np.array([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])


def decay(t, y):
    """y' = -y/2 for any shape: y(t) = y0 exp(-t/2)."""
    return -0.5 * y


def decay_exact(y0, t):
    return np.exp(-0.5 * np.asarray(t))[:, None] * np.ravel(y0)[None, :]


def cos_growth(t, y):
    """y' = y cos(t): y(t) = y0 exp(sin t) (non-autonomous)."""
    return y * np.cos(t)


def cos_growth_exact(y0, t):
    return np.exp(np.sin(np.asarray(t)))[:, None] * np.ravel(y0)[None, :]
