"""Step-size control: the initial step, and the step factor after each attempt.

Two controllers, chosen by ``options["controller"]``:

``"pi"``  Hairer's DOPRI5 (HNW §IV.2, eq. 2.43c, "Lund stabilisation"; the
          Fortran code ``dopri5.f``): ``h_new = h * safety * err**-(1/q - 0.75 beta)
          * err_prev**beta`` with ``beta = 0.04``, ``err_prev`` starting at 1e-4, and
          a last step stretched to the end point when it would fall within 1 %
          of it.
``"i"``   the plain integral (elementary) controller of scipy's ``RK45`` and
          torchdiffeq: ``h_new = h * safety * err**(-1/q)``; a step that would pass
          the end point is shortened to land on it.

with ``q = error_order + 1``. Both bound the factor to ``[0.2, 10]``, use
``safety = 0.9`` and do not grow the step right after a rejection.
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["SAFETY", "MIN_FACTOR", "MAX_FACTOR", "PI_BETA", "CONTROLLERS",
           "accept_factor", "reject_factor", "initial_guess", "initial_step", "min_step_at",
           "next_attempt"]

SAFETY = 0.9        # aim below the tolerance so the next step is likely accepted
MIN_FACTOR = 0.2    # largest decrease in one attempt (Hairer's FAC1)
MAX_FACTOR = 10.0   # largest increase in one step (Hairer's FAC2)
PI_BETA = 0.04      # Hairer's recommended beta for DOPRI5
PI_ERR_PREV0 = 1e-4  # err_prev before the first accepted step (Hairer's FACOLD)

# name -> (beta, last-step stretch)
CONTROLLERS = {"pi": (PI_BETA, 1.01), "i": (0.0, 1.0)}


@kernel(inline=True)
def accept_factor(err, err_prev, exponent, beta, rejected_last):
    """Factor for the next step after an accepted one (``err <= 1``).

    ``exponent`` is ``1/q - 0.75*beta`` (``1/q`` for the I controller).
    """
    if err == 0.0:
        factor = MAX_FACTOR
    else:
        factor = SAFETY * err ** (-exponent) * err_prev ** beta
        factor = min(MAX_FACTOR, max(MIN_FACTOR, factor))
    if rejected_last:  # HNW §II.4: no growth right after a rejection
        factor = min(1.0, factor)
    return factor


@kernel(inline=True)
def reject_factor(err, exponent):
    """Factor for the retry after a rejected attempt (``err > 1``, or NaN)."""
    if not math.isfinite(err):
        return MIN_FACTOR
    return max(MIN_FACTOR, SAFETY * err ** (-exponent))


@kernel(inline=True)
def initial_guess(d0, d1, interval):
    """First trial step from ``d0 = ||y0||`` and ``d1 = ||f0||`` (HNW §II.4, steps a-b).

    Norms are the scaled RMS norm with ``sc = atol + rtol*|y0|``. Returns ``h0``
    clipped to the integration interval.
    """
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    if not (h0 > 0.0 and math.isfinite(h0)):  # d1 = inf: atol = 0 at a zero component that moves
        h0 = 1e-6
    return min(h0, interval)


@kernel(inline=True)
def initial_step(h0, d1, d2, error_order, interval, max_step):
    """Initial step from one explicit Euler trial (HNW §II.4, steps c-f).

    ``d2 = ||f(t0 + h0, y0 + h0 f0) - f0|| / h0`` estimates the second
    derivative; the step is chosen so that ``h**q * max(d1, d2) = 0.01``,
    then bounded by ``100 h0``, the interval and ``max_step``. A non-finite
    ``d2`` (the trial point blew up) falls back to ``h0``.
    """
    if not (math.isfinite(d2) and math.isfinite(d1)):
        return min(h0 if math.isfinite(h0) else 1e-6, interval, max_step)
    dmax = max(d1, d2)
    if dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (error_order + 1))
    return min(100.0 * h0, h1, interval, max_step)


@kernel(inline=True)
def min_step_at(t, direction):
    """The smallest step that still changes ``t``: ten units in the last place (as scipy)."""
    return 10.0 * abs(np.nextafter(t, direction * np.inf) - t)


@kernel(inline=True)
def next_attempt(t, t_end, h_abs, direction, stretch):
    """The end ``t_new`` and signed size ``h = t_new - t`` of the next attempt.

    A step that would pass ``t_end`` (or, with ``stretch = 1.01``, land within
    1 % of it: Hairer's DOPRI5) ends exactly on ``t_end``; output times inside
    the interval never shorten a step.
    """
    h = direction * h_abs
    t_new = t + h
    if direction * (t + stretch * h - t_end) > 0.0:
        t_new = t_end
    return t_new, t_new - t
